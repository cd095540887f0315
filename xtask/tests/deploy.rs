//! The scale-out examples, checked offline (no cluster can run here): the
//! Kubernetes manifests deserialised into the typed API objects, the CI
//! matrix workflow read as YAML, and the suite they run planned as a shard.
//! What matters: every pod is one shard by its completion index, all start
//! at one shared instant, results go to one volume the merge reads.

use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, PodSpec};

const SHARDS: i32 = 4;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every document of a YAML file.
fn documents(path: &str) -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| serde::Deserialize::deserialize(document).unwrap())
        .collect()
}

fn of_kind<T: serde::de::DeserializeOwned>(
    documents: &[serde_yaml_ng::Value],
    kind: &str,
) -> Vec<T> {
    documents
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .map(|d| serde_yaml_ng::from_value(d.clone()).unwrap_or_else(|e| panic!("a {kind}: {e}")))
        .collect()
}

fn pod(job: &Job) -> &PodSpec {
    job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

/// Where `container` mounts the volume backed by claim `claim`, and by config map `map`.
fn mount_of<'a>(
    pod: &'a PodSpec,
    container: &'a Container,
    claim: Option<&str>,
    map: Option<&str>,
) -> &'a str {
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            claim.is_some_and(|c| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|p| p.claim_name == c)
            }) || map.is_some_and(|m| v.config_map.as_ref().is_some_and(|c| c.name == m))
        })
        .unwrap_or_else(|| panic!("no volume of claim {claim:?} / config map {map:?}"));
    &container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == volume.name)
        .unwrap_or_else(|| panic!("volume {} not mounted", volume.name))
        .mount_path
}

#[test]
fn the_indexed_job_runs_one_shard_per_index_from_one_instant_into_one_volume() {
    let documents = documents("deploy/kubernetes/shards.yaml");
    let claims: Vec<PersistentVolumeClaim> = of_kind(&documents, "PersistentVolumeClaim");
    let [claim] = claims.as_slice() else {
        panic!("one claim")
    };
    let claim_name = claim.metadata.name.as_deref().unwrap();
    let modes = claim
        .spec
        .as_ref()
        .unwrap()
        .access_modes
        .clone()
        .unwrap_or_default();
    assert!(
        modes.contains(&"ReadWriteMany".to_owned()),
        "every pod writes it: {modes:?}"
    );

    let jobs: Vec<Job> = of_kind(&documents, "Job");
    let [job] = jobs.as_slice() else {
        panic!("one job")
    };
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
    assert_eq!(spec.completions, Some(SHARDS));
    assert_eq!(spec.parallelism, Some(SHARDS), "every shard at once");
    let pod = pod(job);
    let [container] = pod.containers.as_slice() else {
        panic!("one container")
    };
    let args = container.args.clone().unwrap();
    let after = |flag: &str| {
        let at = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
        args[at + 1].clone()
    };
    assert_eq!(
        after("--shard"),
        format!("$(JOB_COMPLETION_INDEX)/{SHARDS}")
    );
    let env = |name: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .value_from
            .clone()
            .unwrap()
    };
    let index = env("JOB_COMPLETION_INDEX").field_ref.unwrap().field_path;
    assert_eq!(
        index,
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    // One instant for all: a config map's value, the same in every pod.
    assert_eq!(
        env("AHSP_PERF_START_AT").config_map_key_ref.unwrap().key,
        "start-at"
    );
    assert_eq!(
        env("PERF_USERS").secret_key_ref.unwrap().name,
        "ahsp-perf-users"
    );
    // Results on the shared volume, one folder per shard.
    let results = mount_of(pod, container, Some(claim_name), None);
    assert_eq!(
        after("--output"),
        format!("{results}/shard-$(JOB_COMPLETION_INDEX)")
    );
    let suite = mount_of(pod, container, None, Some("ahsp-perf-suite"));
    assert_eq!(args[1], format!("{suite}/sharded.toml"));
    assert_eq!(args[0], "perf");
}

#[test]
fn the_merge_job_reads_every_shard_folder_of_the_shared_volume() {
    let shards: Vec<Job> = of_kind(&documents("deploy/kubernetes/shards.yaml"), "Job");
    let claim = pod(&shards[0])
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .unwrap()
        .claim_name
        .clone();
    let jobs: Vec<Job> = of_kind(&documents("deploy/kubernetes/merge.yaml"), "Job");
    let [merge] = jobs.as_slice() else {
        panic!("one job")
    };
    let pod = pod(merge);
    let container = &pod.containers[0];
    let results = mount_of(pod, container, Some(&claim), None);
    let suite = mount_of(pod, container, None, Some("ahsp-perf-suite"));
    let command = container.args.clone().unwrap().join(" ");
    assert!(
        command.contains(&format!("perf merge {results}/shard-*/*-sharded --suite {suite}/sharded.toml --output {results}/merged")),
        "{command}"
    );
}

#[test]
fn the_ci_matrix_runs_each_shard_from_one_instant_and_merges_them_all() {
    let workflow = documents(".github/workflows/perf-sharded.yml").remove(0);
    let jobs = &workflow["jobs"];
    let matrix: Vec<i64> = jobs["shard"]["strategy"]["matrix"]["shard"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(matrix, (0..i64::from(SHARDS)).collect::<Vec<_>>());
    assert_eq!(jobs["shard"]["needs"].as_str(), Some("plan"));
    assert_eq!(jobs["merge"]["needs"].as_str(), Some("shard"));
    let steps = jobs["shard"]["steps"].as_sequence().unwrap();
    let run = steps
        .iter()
        .find_map(|s| s["run"].as_str().filter(|r| r.contains("--shard")))
        .unwrap();
    assert!(
        run.contains(&format!("--shard ${{{{ matrix.shard }}}}/{SHARDS}")),
        "{run}"
    );
    assert!(run.contains("--output target/shard"), "{run}");
    let start = steps
        .iter()
        .find_map(|s| s["env"]["AHSP_PERF_START_AT"].as_str())
        .unwrap();
    assert_eq!(start, "${{ needs.plan.outputs.start_at }}");
    let uploaded = steps
        .iter()
        .find_map(|s| s["with"]["path"].as_str())
        .unwrap();
    assert_eq!(uploaded, "target/shard");
    let merge = jobs["merge"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|s| s["run"].as_str().filter(|r| r.contains("perf merge")))
        .unwrap();
    assert!(merge.contains("--suite deploy/sharded.toml"), "{merge}");
}

#[test]
fn the_sharded_suite_plans_as_a_shard_and_splits_its_load() {
    use harness::suite::plan::{Executor, Plan, PlanOptions, Shard, ShardPlan};
    let path = root().join("deploy/sharded.toml");
    let plan = |shard: &str| {
        Plan::from_file(
            &path,
            &PlanOptions {
                shard: Some(ShardPlan {
                    shard: shard.parse::<Shard>().unwrap(),
                    start_at_unix_ms: None,
                }),
                judging_only: true,
                extra_metrics: harness::run::extra_metrics(),
                ..PlanOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let users: u32 = (0..SHARDS)
        .map(|i| match &plan(&format!("{i}/{SHARDS}")).load.executor {
            Executor::Users { stages } => stages.iter().map(|s| s.to).max().unwrap(),
            other => panic!("{other:?}"),
        })
        .sum();
    assert_eq!(users, 400, "the shards' users add up to the suite's");
}
