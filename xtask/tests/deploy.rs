//! The scale-out examples, checked offline (no cluster can run here): the
//! Kubernetes manifests deserialised into the typed API objects, the CI
//! matrix workflow read as YAML, and the suite they run planned as a shard.
//! What matters: every pod is one shard by its completion index, all start
//! at one shared instant, results go to one volume the merge reads, and a
//! stock cluster admits the pods (restricted Pod Security, an image a node
//! with it loaded does not pull, a storage class named).

use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, PersistentVolumeClaim, PodSpec};

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

/// The container's environment variable `name`.
fn env_var(container: &Container, name: &str) -> EnvVar {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .clone()
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
    let env = |name: &str| env_var(container, name).value_from.unwrap();
    let index = env("JOB_COMPLETION_INDEX").field_ref.unwrap().field_path;
    assert_eq!(
        index,
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    );
    // One run name for all: a config map's value, the same in every pod,
    // read by `--run-id` from the environment.
    assert_eq!(
        env("AHSP_PERF_RUN_ID").config_map_key_ref.unwrap().key,
        "run"
    );
    assert_eq!(
        env("PERF_USERS").secret_key_ref.unwrap().name,
        "ahsp-perf-users"
    );
    // Results on the shared volume, one folder per shard.
    let results = mount_of(pod, container, Some(claim_name), None);
    // A folder per run (its name), so a rerun on the volume never meets an
    // earlier run's shards; the barrier in it.
    assert_eq!(
        after("--output"),
        format!("{results}/$(AHSP_PERF_RUN_ID)/shard-$(JOB_COMPLETION_INDEX)")
    );
    assert_eq!(
        after("--barrier"),
        format!("{results}/$(AHSP_PERF_RUN_ID)/barrier")
    );
    // The shards wait for each other within the Job's deadline.
    let waits = humantime::parse_duration(&after("--barrier-timeout")).unwrap();
    assert!(
        (waits.as_secs() as i64) < spec.active_deadline_seconds.unwrap(),
        "{waits:?}"
    );
    // No retry: a retried shard would start after the others began.
    assert_eq!(spec.backoff_limit_per_index, Some(0));
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
    let args = container.args.clone().unwrap();
    let after = |flag: &str| {
        let at = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
        args[at + 1].clone()
    };
    assert_eq!(&args[..2], ["perf", "merge"], "{args:?}");
    // The run's folder on the shared volume, where the shards write.
    let shards_args = self::pod(&shards[0]).containers[0].args.clone().unwrap();
    let shard_output = &shards_args[shards_args.iter().position(|a| a == "--output").unwrap() + 1];
    let run = format!("{results}/$(AHSP_PERF_RUN_ID)");
    assert!(
        shard_output.starts_with(&format!("{run}/")),
        "{shard_output}"
    );
    assert_eq!(after("--find"), run);
    assert_eq!(after("--output"), format!("{run}/merged"));
    assert_eq!(after("--suite"), format!("{suite}/sharded.toml"));
    assert!(args.contains(&"--allow-partial".to_owned()), "{args:?}");
    // It waits for the shards by itself, as long as their deadline at most,
    // and outlives it.
    let waits = humantime::parse_duration(&after("--wait"))
        .unwrap()
        .as_secs() as i64;
    let shards_spec = shards[0].spec.as_ref().unwrap();
    assert!(
        waits <= shards_spec.active_deadline_seconds.unwrap(),
        "{waits}"
    );
    assert!(
        merge.spec.as_ref().unwrap().active_deadline_seconds
            > Some(shards_spec.active_deadline_seconds.unwrap() + 60),
        "the merge outlives the shards' deadline"
    );
    assert_eq!(
        env_var(container, "AHSP_PERF_RUN_ID")
            .value_from
            .unwrap()
            .config_map_key_ref
            .unwrap()
            .name,
        "ahsp-perf-run"
    );
}

/// What a stock cluster asks of a pod, checked offline: the "restricted"
/// Pod Security Standard (its rules as of Kubernetes 1.30), an image that
/// a node which has it loaded does not pull, a deadline and a clean-up.
#[test]
fn every_job_runs_on_a_stock_cluster_at_the_restricted_level() {
    let mut jobs: Vec<Job> = of_kind(&documents("deploy/kubernetes/shards.yaml"), "Job");
    jobs.extend(of_kind::<Job>(
        &documents("deploy/kubernetes/merge.yaml"),
        "Job",
    ));
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let name = job.metadata.name.as_deref().unwrap();
        let spec = job.spec.as_ref().unwrap();
        assert!(
            spec.active_deadline_seconds.is_some(),
            "{name}: no deadline"
        );
        assert!(spec.ttl_seconds_after_finished.is_some(), "{name}: no TTL");
        let pod = pod(job);
        assert!(
            pod.host_network != Some(true)
                && pod.host_pid != Some(true)
                && pod.host_ipc != Some(true),
            "{name}: host namespaces"
        );
        for volume in pod.volumes.iter().flatten() {
            assert!(volume.host_path.is_none(), "{name}: a hostPath volume");
        }
        let pod_security = pod.security_context.clone().unwrap_or_default();
        let pod_seccomp = pod_security
            .seccomp_profile
            .as_ref()
            .map(|p| p.type_.as_str());
        for container in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            let what = format!("{name}/{}", container.name);
            let security = container.security_context.clone().unwrap_or_default();
            assert_eq!(security.allow_privilege_escalation, Some(false), "{what}");
            assert_ne!(security.privileged, Some(true), "{what}");
            let dropped = security
                .capabilities
                .as_ref()
                .and_then(|c| c.drop.clone())
                .unwrap_or_default();
            assert!(
                dropped.contains(&"ALL".to_owned()),
                "{what}: capabilities not dropped"
            );
            let added = security
                .capabilities
                .as_ref()
                .and_then(|c| c.add.clone())
                .unwrap_or_default();
            assert!(
                added.iter().all(|c| c == "NET_BIND_SERVICE"),
                "{what}: adds {added:?}"
            );
            let non_root = security.run_as_non_root.or(pod_security.run_as_non_root);
            assert_eq!(non_root, Some(true), "{what}: may run as root");
            let user = security.run_as_user.or(pod_security.run_as_user);
            assert_ne!(user, Some(0), "{what}: runs as root");
            let seccomp = security
                .seccomp_profile
                .as_ref()
                .map(|p| p.type_.as_str())
                .or(pod_seccomp);
            assert!(
                matches!(seccomp, Some("RuntimeDefault" | "Localhost")),
                "{what}: seccomp {seccomp:?}"
            );
            let image = container.image.as_deref().unwrap();
            assert!(!image.ends_with(":latest"), "{what}: {image}");
            assert_eq!(
                container.image_pull_policy.as_deref(),
                Some("IfNotPresent"),
                "{what}"
            );
            assert!(
                container
                    .ports
                    .iter()
                    .flatten()
                    .all(|p| p.host_port.is_none()),
                "{what}: host port"
            );
        }
    }
    // The shards spread over the nodes.
    let spread = pod(&jobs[0])
        .topology_spread_constraints
        .clone()
        .unwrap_or_default();
    assert!(
        spread
            .iter()
            .any(|c| c.topology_key == "kubernetes.io/hostname"),
        "{spread:?}"
    );
}

/// The kustomization applies both Jobs and names what each cluster names
/// its own way: the image, and a storage class that offers ReadWriteMany.
#[test]
fn the_kustomization_sets_the_image_and_asks_for_a_readwritemany_class() {
    let kustomization = documents("deploy/kubernetes/kustomization.yaml").remove(0);
    let resources: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(resources, ["shards.yaml", "merge.yaml"]);
    let image = &kustomization["images"][0];
    assert_eq!(image["name"].as_str(), Some("ahsp-perf"));
    assert!(image["newTag"].as_str().is_some_and(|t| t != "latest"));
    let patch = &kustomization["patches"][0];
    assert_eq!(
        patch["target"]["kind"].as_str(),
        Some("PersistentVolumeClaim")
    );
    assert!(
        patch["patch"]
            .as_str()
            .unwrap()
            .contains("/spec/storageClassName"),
        "{patch:?}"
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
    let merge_needs: Vec<&str> = jobs["merge"]["needs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(merge_needs.contains(&"shard"), "{merge_needs:?}");
    // A failed shard does not stop the merge, which judges what there is.
    assert!(
        jobs["merge"]["if"].as_str().unwrap().contains("always()"),
        "{:?}",
        jobs["merge"]["if"]
    );
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
    // The target comes from the workflow's input, its host allowed on the
    // command line, not by editing the suite.
    assert!(run.contains("--allow-host \"$host\""), "{run}");
    let shard_env = steps
        .iter()
        .find_map(|s| s["env"]["AHSP_PERF_RUN_ID"].as_str())
        .unwrap();
    assert!(shard_env.contains("github.run_attempt"), "{shard_env}");
    let start = steps
        .iter()
        .find_map(|s| s["env"]["AHSP_PERF_START_AT"].as_str())
        .unwrap();
    assert_eq!(start, "${{ needs.plan.outputs.start_at }}");
    let upload = steps
        .iter()
        .find(|s| s["with"]["path"].as_str().is_some())
        .unwrap();
    assert_eq!(upload["with"]["path"].as_str(), Some("target/shard"));
    assert_eq!(
        upload["if"].as_str(),
        Some("always()"),
        "a failed shard's folder too"
    );
    let merge = jobs["merge"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|s| s["run"].as_str().filter(|r| r.contains("perf merge")))
        .unwrap();
    assert!(merge.contains("--suite deploy/sharded.toml"), "{merge}");
    assert!(merge.contains("--allow-partial"), "{merge}");
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
