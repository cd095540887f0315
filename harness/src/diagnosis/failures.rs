//! Causes of failed requests: each kind of failure explained in words.

pub(super) fn explain_kind(kind: &str, sample: &str) -> String {
    match kind {
        "rate-limited" => format!(
            "the target limits login attempts per IP and answered 200 with its message (`{sample}`)"
        ),
        "csrf-rejected" => {
            format!("the endpoint requires a CSRF token this client does not send (`{sample}`)")
        }
        "login-page-returned" => {
            format!("the login did not take — the form came back (`{sample}`)")
        }
        "timeout" => format!("no answer within the client timeout (`{sample}`)"),
        _ => format!("`{sample}`"),
    }
}
