//! Cross-checks the AWS API operations the code calls against `aws/iam-policy.json`.
//!
//! The scanner reads every `src/**/*.rs` file, drops comments and string literals, and collects method calls
//! (`.name(`, also split over lines as in builder chains). Those whose name is an aws-sdk-ecr operation
//! ([`ECR_OPERATIONS`]) map to the IAM action `ecr:OperationName`, which the policy must allow. It errs on the safe
//! side: a method of our own that shares an operation's name (the `EcrApi` trait's `create_repository`) counts as a
//! call too, which can only ask for a permission the real call needs anyway.
//!
//! The policy is also held to least privilege: no wildcard action, unique `Sid`s, repository-scoped resources
//! except for `GetAuthorizationToken`, and no action that neither the code nor the registry data plane needs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every operation of aws-sdk-ecr 1.x, as the snake_case method name on `aws_sdk_ecr::Client`: the directory names
/// under `aws-sdk-ecr-1.*/src/operation/`. `ecr_operations_match_the_sdk_source` checks it against the SDK in the
/// cargo registry, so a new SDK operation cannot slip past the scanner.
const ECR_OPERATIONS: &[&str] = &[
    "batch_check_layer_availability",
    "batch_delete_image",
    "batch_get_image",
    "batch_get_repository_scanning_configuration",
    "complete_layer_upload",
    "create_pull_through_cache_rule",
    "create_repository",
    "create_repository_creation_template",
    "delete_lifecycle_policy",
    "delete_pull_through_cache_rule",
    "delete_registry_policy",
    "delete_repository",
    "delete_repository_creation_template",
    "delete_repository_policy",
    "delete_signing_configuration",
    "deregister_pull_time_update_exclusion",
    "describe_image_replication_status",
    "describe_image_scan_findings",
    "describe_image_signing_status",
    "describe_images",
    "describe_pull_through_cache_rules",
    "describe_registry",
    "describe_replication_backfill_results",
    "describe_repositories",
    "describe_repository_creation_templates",
    "get_account_setting",
    "get_authorization_token",
    "get_download_url_for_layer",
    "get_lifecycle_policy",
    "get_lifecycle_policy_preview",
    "get_registry_policy",
    "get_registry_scanning_configuration",
    "get_repository_policy",
    "get_signing_configuration",
    "initiate_layer_upload",
    "list_image_referrers",
    "list_images",
    "list_pull_time_update_exclusions",
    "list_replication_backfills",
    "list_tags_for_resource",
    "put_account_setting",
    "put_image",
    "put_image_scanning_configuration",
    "put_image_tag_mutability",
    "put_lifecycle_policy",
    "put_registry_policy",
    "put_registry_scanning_configuration",
    "put_replication_configuration",
    "put_signing_configuration",
    "register_pull_time_update_exclusion",
    "set_repository_policy",
    "start_image_scan",
    "start_lifecycle_policy_preview",
    "start_replication_backfill",
    "stop_replication_backfill",
    "tag_resource",
    "untag_resource",
    "update_image_storage_class",
    "update_pull_through_cache_rule",
    "update_repository_creation_template",
    "upload_layer_part",
    "validate_pull_through_cache_rule",
];

/// Account-level actions: ECR has no resource type for them, so their statements need
/// `"Resource": "*"`, and nothing else may share those statements.
const ACCOUNT_LEVEL: &[&str] = &["ecr:GetAuthorizationToken", "ecr:GetAccountSetting"];

/// What the registry (OCI distribution) API needs on ECR, which the code reaches over HTTP and not through the SDK,
/// so the scanner cannot see it: pull (HEAD/GET manifests and blobs, which ECR authorizes as these actions) and push
/// (blob uploads and manifest PUTs), `DescribeImages` for the image details the report shows, and `ListImages`,
/// which authorizes the registry API's `GET /v2/<name>/tags/list` (`list --check` lists a tag-rule repository's
/// ECR tags to report those the rule no longer selects).
const REGISTRY_DATA_PLANE: &[&str] = &[
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "ecr:ListImages",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:DescribeImages",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `get_download_url_for_layer` → `ecr:GetDownloadUrlForLayer`.
fn iam_action(operation: &str) -> String {
    let pascal: String = operation
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("ecr:{pascal}")
}

/// The source with comments, string and char literals blanked out (lines kept), so that a call mentioned in a doc
/// comment or a message does not count.
fn strip_comments_and_strings(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_is_ident = i > 0 && is_ident(chars[i - 1]);
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if (c == 'r' || (c == 'b' && next == Some('r'))) && !prev_is_ident && {
            // A raw string: r"..", r#".."#, br"..".
            let mut j = i + if c == 'b' { 2 } else { 1 };
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            chars.get(j) == Some(&'"')
        } {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars[j] == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend(chars[i..j.min(chars.len())].iter().map(|&c| blank(c)));
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            j = (j + 1).min(chars.len());
            out.extend(chars[i..j].iter().map(|&c| blank(c)));
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The names of the methods called in `src` (`.name(`, whitespace allowed around the name).
fn method_calls(src: &str) -> BTreeSet<String> {
    let code = strip_comments_and_strings(src);
    let bytes = code.as_bytes();
    let mut calls = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'.' && bytes.get(i + 1) != Some(&b'.') && (i == 0 || bytes[i - 1] != b'.') {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            let start = j;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                j += 1;
            }
            let name = &code[start..j];
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if !name.is_empty() && bytes.get(j) == Some(&b'(') {
                calls.insert(name.to_owned());
            }
            i = start.max(i + 1);
        } else {
            i += 1;
        }
    }
    calls
}

/// The aws-sdk-ecr operations called in `src`, as IAM actions.
fn ecr_actions_called(src: &str) -> BTreeSet<String> {
    method_calls(src)
        .into_iter()
        .filter(|name| ECR_OPERATIONS.contains(&name.as_str()))
        .map(|name| iam_action(&name))
        .collect()
}

/// A string or a list of strings, as IAM writes `Action` and `Resource`.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

/// The policy's `Allow` statements: Sid → (actions, resources).
fn allow_statements(policy: &Value) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out = BTreeMap::new();
    for statement in policy["Statement"].as_array().expect("Statement is a list") {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        let sid = statement["Sid"]
            .as_str()
            .expect("every statement has a Sid");
        let entry = (
            strings(&statement["Action"]),
            strings(&statement["Resource"]),
        );
        assert!(
            out.insert(sid.to_owned(), entry).is_none(),
            "duplicate Sid {sid:?}"
        );
    }
    out
}

/// The actions among `needed` that `policy` does not allow.
fn missing_permissions(needed: &BTreeSet<String>, policy: &Value) -> Vec<String> {
    let allowed: BTreeSet<String> = allow_statements(policy)
        .into_values()
        .flat_map(|(actions, _)| actions)
        .collect();
    needed
        .iter()
        .filter(|action| !allowed.contains(*action))
        .cloned()
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The IAM actions of every aws-sdk-ecr call in `src/`, each with a file that makes it.
fn actions_called_by_the_code() -> BTreeMap<String, PathBuf> {
    let mut files = Vec::new();
    rust_files(&manifest_dir().join("src"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no Rust files under src/");
    let mut actions = BTreeMap::new();
    for file in files {
        let src = std::fs::read_to_string(&file).unwrap();
        for action in ecr_actions_called(&src) {
            actions.entry(action).or_insert_with(|| file.clone());
        }
    }
    actions
}

fn policy() -> Value {
    let path = manifest_dir().join("aws/iam-policy.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

#[test]
fn every_ecr_call_in_the_code_is_allowed() {
    let called = actions_called_by_the_code();
    let needed: BTreeSet<String> = called.keys().cloned().collect();
    eprintln!("aws-sdk-ecr operations called in src/: {needed:?}");
    let missing = missing_permissions(&needed, &policy());
    let report: Vec<String> = missing
        .iter()
        .map(|action| format!("{action} (called in {})", called[action].display()))
        .collect();
    assert!(
        missing.is_empty(),
        "aws/iam-policy.json does not allow: {}",
        report.join(", ")
    );
}

#[test]
fn registry_pull_and_push_are_allowed() {
    let needed: BTreeSet<String> = REGISTRY_DATA_PLANE.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        missing_permissions(&needed, &policy()),
        Vec::<String>::new()
    );
}

#[test]
fn policy_is_least_privilege() {
    let policy = policy();
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = allow_statements(&policy); // also asserts the Sids are unique
    let called = actions_called_by_the_code();
    for (sid, (actions, resources)) in &statements {
        assert!(!actions.is_empty(), "{sid}: no action");
        for action in actions {
            assert!(!action.contains('*'), "{sid}: wildcard action {action:?}");
            assert!(
                called.contains_key(action) || REGISTRY_DATA_PLANE.contains(&action.as_str()),
                "{sid}: {action} is granted but neither called by the code nor needed by the registry API"
            );
        }
        if actions.len() == 1 && ACCOUNT_LEVEL.contains(&actions[0].as_str()) {
            // GetAuthorizationToken and GetAccountSetting have no resource-level permissions:
            // "*" is the only valid resource.
            assert_eq!(resources, &["*"], "{sid}");
        } else {
            assert!(
                !actions.iter().any(|a| ACCOUNT_LEVEL.contains(&a.as_str())),
                "{sid}: keep each account-level action (Resource \"*\") in a statement of its own"
            );
            for resource in resources {
                assert!(
                    resource.starts_with("arn:aws:ecr:") && resource.contains(":repository/"),
                    "{sid}: {resource:?} is not scoped to ECR repositories"
                );
            }
        }
    }
}

#[test]
fn trust_policy_templates_are_valid_json() {
    for name in ["irsa-trust-policy.json", "pod-identity-trust-policy.json"] {
        let path = manifest_dir().join("aws").join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(value["Version"], "2012-10-17", "{name}");
    }
    let irsa = std::fs::read_to_string(manifest_dir().join("aws/irsa-trust-policy.json")).unwrap();
    assert!(irsa.contains("system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT"));
    assert!(irsa.contains("sts:AssumeRoleWithWebIdentity"));
}

#[test]
fn scanner_catches_a_call_added_without_its_permission() {
    // A builder chain split over lines, as rustfmt writes them, calling an operation the policy does not grant.
    let src = r#"
        async fn scan(client: &aws_sdk_ecr::Client) {
            let _ = client
                .start_image_scan()
                .repository_name("mirror/keda")
                .send()
                .await;
            let _ = client.describe_repositories().send().await;
        }
    "#;
    let needed = ecr_actions_called(src);
    assert_eq!(
        needed,
        BTreeSet::from([
            "ecr:DescribeRepositories".to_owned(),
            "ecr:StartImageScan".to_owned()
        ])
    );
    assert_eq!(
        missing_permissions(&needed, &policy()),
        vec!["ecr:StartImageScan".to_owned()]
    );
}

#[test]
fn scanner_ignores_comments_strings_and_other_methods() {
    let src = r##"
        // client.delete_repository() is never called
        /* nor .batch_delete_image( here /* nested */ .put_registry_policy() */
        /// Calls `.set_repository_policy()`.
        fn f<'a>(x: &'a str) -> char {
            let _ = "client.delete_lifecycle_policy()";
            let _ = r#"a "quoted" .untag_resource() "#;
            let _ = '"'; let _ = '\''; let _ = b'.';
            let _ = (0..10).map(|i| i + 1).len();
            x.list_images ( ) ;
            '"'
        }
    "##;
    assert_eq!(
        ecr_actions_called(src),
        BTreeSet::from(["ecr:ListImages".to_owned()])
    );
    assert_eq!(
        iam_action("get_download_url_for_layer"),
        "ecr:GetDownloadUrlForLayer"
    );
    assert_eq!(
        iam_action("batch_check_layer_availability"),
        "ecr:BatchCheckLayerAvailability"
    );
}

#[test]
fn missing_permissions_sees_a_missing_action() {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "A", "Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*"}]
    });
    let needed = BTreeSet::from([
        "ecr:DescribeRepositories".to_owned(),
        "ecr:PutImage".to_owned(),
    ]);
    assert_eq!(
        missing_permissions(&needed, &policy),
        vec!["ecr:PutImage".to_owned()]
    );
}

#[test]
#[should_panic(expected = "duplicate Sid")]
fn duplicate_sids_are_rejected() {
    let statement = serde_json::json!({"Sid": "Same", "Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*"});
    allow_statements(&serde_json::json!({"Statement": [statement.clone(), statement]}));
}

/// The aws-sdk-ecr versions in the cargo registry: those in `Cargo.lock` when it names one, else every 1.x there.
fn sdk_operation_dirs() -> Vec<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(registry) = cargo_home.map(|h| h.join("registry/src")) else {
        return Vec::new();
    };
    let locked: Option<String> = std::fs::read_to_string(manifest_dir().join("Cargo.lock"))
        .ok()
        .and_then(|lock| {
            let after = lock.split("name = \"aws-sdk-ecr\"\nversion = \"").nth(1)?;
            Some(after.split('"').next()?.to_owned())
        });
    let mut dirs = Vec::new();
    for index in std::fs::read_dir(&registry).into_iter().flatten().flatten() {
        for krate in std::fs::read_dir(index.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = krate.file_name().to_string_lossy().into_owned();
            let wanted = match &locked {
                Some(version) => name == format!("aws-sdk-ecr-{version}"),
                None => name.starts_with("aws-sdk-ecr-1."),
            };
            if wanted {
                dirs.push(krate.path().join("src/operation"));
            }
        }
    }
    dirs
}

#[test]
fn ecr_operations_match_the_sdk_source() {
    let dirs = sdk_operation_dirs();
    if dirs.is_empty() {
        eprintln!("aws-sdk-ecr source not found in the cargo registry: the operation list was not re-checked");
        return;
    }
    for dir in dirs {
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path().is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !ECR_OPERATIONS.contains(&name.as_str()) {
                    missing.push(name);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{} has operations missing from ECR_OPERATIONS: {missing:?}",
            dir.display()
        );
    }
}
