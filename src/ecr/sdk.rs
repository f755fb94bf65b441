//! [`EcrApi`] over the AWS SDK (`aws_sdk_ecr::Client`).
//!
//! This is the only file that sees SDK types. Everything leaving it is ours: [`Repository`],
//! [`EcrToken`], [`EcrError`]. Errors are classified by the SDK's error *code* and the HTTP
//! status, never by message text, because messages differ between AWS and moto (and change).
//!
//! Configuration follows the standard chain (`aws_config::defaults`): credentials from the
//! environment, profile, SSO, IRSA or EKS Pod Identity; `AWS_REGION` or `--region`; and the
//! standard `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_ECR`), which is how the tool and the
//! tests reach moto. The SDK retries transient failures itself (standard mode, 3 attempts).

use std::time::SystemTime;

use aws_config::BehaviorVersion;
use aws_sdk_ecr::config::{Credentials, Region};
use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{
    EncryptionConfiguration, EncryptionType, ImageScanningConfiguration, ImageTagMutability, Tag,
};
use base64::Engine as _;

use super::{in_prefix, repository_name_from_arn, EcrApi, EcrError, EcrToken, Encryption};
use super::{RepoSettings, Repository, TagMutability};

/// ECR through aws-sdk-ecr. Cheap to clone (the SDK client is reference-counted).
#[derive(Debug, Clone)]
pub struct SdkEcr {
    client: aws_sdk_ecr::Client,
}

impl SdkEcr {
    /// Loads the standard AWS configuration (credentials chain, profile, `AWS_ENDPOINT_URL`,
    /// ...) with the latest behaviour version. `region` (the `--region` flag) overrides the
    /// region from the environment or profile.
    ///
    /// This does not fail: a missing region or missing credentials show up as an
    /// [`EcrError::Other`] (or `AccessDenied`) on the first call, naming the operation.
    pub async fn from_env(region: Option<String>) -> SdkEcr {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        let config = loader.load().await;
        SdkEcr {
            client: aws_sdk_ecr::Client::new(&config),
        }
    }

    /// A client for an ECR-compatible endpoint (moto in tests) with static test credentials
    /// (`testing`/`testing`). Reads nothing from the environment, so tests need not change
    /// the process environment.
    pub async fn with_endpoint(endpoint: &str, region: &str) -> SdkEcr {
        let config = aws_sdk_ecr::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "ecr-mirror-sync-static",
            ))
            .build();
        SdkEcr {
            client: aws_sdk_ecr::Client::from_conf(config),
        }
    }

    /// Wraps an existing SDK client.
    pub fn from_client(client: aws_sdk_ecr::Client) -> SdkEcr {
        SdkEcr { client }
    }

    /// The SDK client, for calls outside [`EcrApi`] (e.g. tests checking settings through
    /// `DescribeRepositories`).
    pub fn client(&self) -> &aws_sdk_ecr::Client {
        &self.client
    }
}

impl EcrApi for SdkEcr {
    async fn repositories(&self, prefix: Option<&str>) -> Result<Vec<Repository>, EcrError> {
        const OP: &str = "DescribeRepositories";
        // Every page: the original tool read only the first page (100 repositories) and
        // silently lost the rest. ECR has no server-side name filter, so `prefix` is applied
        // here.
        let raw: Vec<aws_sdk_ecr::types::Repository> = self
            .client
            .describe_repositories()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify(OP, None, e))?;
        raw.iter()
            .filter(|r| r.repository_name().is_some_and(|n| in_prefix(n, prefix)))
            .map(|r| convert_repository(OP, r))
            .collect()
    }

    async fn repository(&self, name: &str) -> Result<Option<Repository>, EcrError> {
        const OP: &str = "DescribeRepositories";
        let out = self
            .client
            .describe_repositories()
            .repository_names(name)
            .send()
            .await;
        match out.map_err(|e| classify(OP, Some(name), e)) {
            Ok(out) => out
                .repositories()
                .iter()
                .find(|r| r.repository_name() == Some(name))
                .map(|r| convert_repository(OP, r))
                .transpose(),
            Err(EcrError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn tags(&self, arn: &str) -> Result<Vec<(String, String)>, EcrError> {
        const OP: &str = "ListTagsForResource";
        let repo = repository_name_from_arn(arn);
        let out = self
            .client
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| classify(OP, Some(repo), e))?;
        Ok(out
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    async fn auth_token(&self) -> Result<EcrToken, EcrError> {
        const OP: &str = "GetAuthorizationToken";
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| classify(OP, None, e))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| EcrError::Other {
                op: OP,
                message: "the response holds no authorizationData".into(),
            })?;
        let encoded = data.authorization_token().ok_or_else(|| EcrError::Other {
            op: OP,
            message: "the response holds no authorizationToken".into(),
        })?;
        let (username, password) =
            decode_token(encoded).map_err(|message| EcrError::Other { op: OP, message })?;
        Ok(EcrToken {
            username,
            password,
            proxy_endpoint: data.proxy_endpoint().unwrap_or_default().to_string(),
            // moto answers with an expiresAt in 2015: already expired. The token still works
            // against a local registry; `TokenCache` keeps that from causing a refresh loop.
            expires_at: data
                .expires_at()
                .and_then(|t| SystemTime::try_from(*t).ok()),
        })
    }

    async fn create_repository(
        &self,
        name: &str,
        settings: &RepoSettings,
        tags: &[(String, String)],
    ) -> Result<Repository, EcrError> {
        const OP: &str = "CreateRepository";
        let other = |message: String| EcrError::Other {
            op: OP,
            message: format!("repository {name:?}: {message}"),
        };
        // Refuse a malformed policy before creating anything, so a bad file never leaves a
        // repository behind without its policy.
        if let Some(policy) = &settings.lifecycle_policy {
            serde_json::from_str::<serde_json::Value>(policy).map_err(|e| EcrError::Other {
                op: "PutLifecyclePolicy",
                message: format!("repository {name:?}: the lifecycle policy is not JSON: {e}"),
            })?;
        }
        let mut req = self
            .client
            .create_repository()
            .repository_name(name)
            .set_tags(Some(sdk_tags(tags).map_err(other)?))
            .image_tag_mutability(if settings.immutable {
                ImageTagMutability::Immutable
            } else {
                ImageTagMutability::Mutable
            })
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(settings.scan_on_push)
                    .build(),
            );
        if let Some(enc) = &settings.encryption {
            let b = match enc {
                Encryption::Aes256 => {
                    EncryptionConfiguration::builder().encryption_type(EncryptionType::Aes256)
                }
                Encryption::Kms { key } => EncryptionConfiguration::builder()
                    .encryption_type(EncryptionType::Kms)
                    .set_kms_key(key.clone()),
            };
            req = req.encryption_configuration(b.build().map_err(|e| other(e.to_string()))?);
        }
        let out = req.send().await.map_err(|e| classify(OP, Some(name), e))?;
        let repo = out
            .repository()
            .ok_or_else(|| other("the response holds no repository".into()))
            .and_then(|r| convert_repository(OP, r))?;
        if let Some(policy) = &settings.lifecycle_policy {
            // The repository exists at this point; the error's operation says which step
            // failed, so a rerun knows to put the policy only.
            self.client
                .put_lifecycle_policy()
                .repository_name(name)
                .lifecycle_policy_text(policy)
                .send()
                .await
                .map_err(|e| classify("PutLifecyclePolicy", Some(name), e))?;
        }
        Ok(repo)
    }

    async fn blob_mounting(&self) -> Result<bool, EcrError> {
        const OP: &str = "GetAccountSetting";
        let out = self
            .client
            .get_account_setting()
            .name("BLOB_MOUNTING")
            .send()
            .await
            .map_err(|e| classify(OP, None, e))?;
        // "Valid values for blob mounting: ENABLED or DISABLED" (the output's `value` doc).
        Ok(out.value() == Some("ENABLED"))
    }

    async fn tag_resource(&self, arn: &str, tags: &[(String, String)]) -> Result<(), EcrError> {
        const OP: &str = "TagResource";
        let repo = repository_name_from_arn(arn);
        if tags.is_empty() {
            return Ok(());
        }
        let tags = sdk_tags(tags).map_err(|message| EcrError::Other {
            op: OP,
            message: format!("repository {repo:?}: {message}"),
        })?;
        self.client
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| classify(OP, Some(repo), e))?;
        Ok(())
    }
}

fn sdk_tags(tags: &[(String, String)]) -> Result<Vec<Tag>, String> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn convert_repository(
    op: &'static str,
    r: &aws_sdk_ecr::types::Repository,
) -> Result<Repository, EcrError> {
    let missing = |field: &str| EcrError::Other {
        op,
        message: format!(
            "repository {:?}: the response lacks {field}",
            r.repository_name().unwrap_or("?")
        ),
    };
    Ok(Repository {
        name: r
            .repository_name()
            .ok_or_else(|| missing("repositoryName"))?
            .to_string(),
        arn: r
            .repository_arn()
            .ok_or_else(|| missing("repositoryArn"))?
            .to_string(),
        uri: r
            .repository_uri()
            .ok_or_else(|| missing("repositoryUri"))?
            .to_string(),
        tag_mutability: {
            let filters = || {
                r.image_tag_mutability_exclusion_filters()
                    .iter()
                    .filter(|f| {
                        f.filter_type()
                            == &aws_sdk_ecr::types::ImageTagMutabilityExclusionFilterType::Wildcard
                    })
                    .map(|f| f.filter().to_string())
                    .collect::<Vec<_>>()
            };
            match r.image_tag_mutability() {
                Some(ImageTagMutability::Immutable) => TagMutability::Immutable,
                Some(ImageTagMutability::ImmutableWithExclusion) => {
                    TagMutability::ImmutableWithExclusion(filters())
                }
                Some(ImageTagMutability::MutableWithExclusion) => {
                    TagMutability::MutableWithExclusion(filters())
                }
                // MUTABLE, absent, or a value newer than this SDK: ECR's default is MUTABLE.
                _ => TagMutability::Mutable,
            }
        },
    })
}

/// Decodes an ECR authorization token: base64 of `USER:PASSWORD` (the user is `AWS`).
fn decode_token(encoded: &str) -> Result<(String, String), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("the authorization token is not base64: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| "the authorization token is not UTF-8 text".to_string())?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| "the authorization token is not USER:PASSWORD".to_string())?;
    if user.is_empty() || password.is_empty() {
        return Err("the authorization token has an empty user or password".into());
    }
    Ok((user.to_string(), password.to_string()))
}

/// Error codes that mean "not allowed" or "not authenticated".
const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "MissingAuthenticationTokenException",
    "UnauthorizedOperation",
];

/// Error codes that mean "slow down" (the SDK's own throttling list, for the codes ECR uses).
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
];

/// Maps an SDK error to [`EcrError`] by error code and HTTP status.
fn classify<E>(op: &'static str, repository: Option<&str>, err: SdkError<E>) -> EcrError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_string);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = || {
        err.message()
            .map(str::to_string)
            .unwrap_or_else(|| DisplayErrorContext(&err).to_string())
    };
    let repo = repository.map(str::to_string);
    match (code.as_deref(), repository) {
        (Some("RepositoryNotFoundException"), Some(r)) => EcrError::NotFound {
            op,
            repository: r.to_string(),
        },
        (Some("RepositoryAlreadyExistsException"), Some(r)) => EcrError::AlreadyExists {
            op,
            repository: r.to_string(),
        },
        (Some(c), _) if ACCESS_DENIED_CODES.contains(&c) => EcrError::AccessDenied {
            op,
            repository: repo,
            message: message(),
        },
        (Some(c), _) if THROTTLING_CODES.contains(&c) => EcrError::Throttled {
            op,
            repository: repo,
            message: message(),
        },
        _ if matches!(status, Some(401 | 403)) => EcrError::AccessDenied {
            op,
            repository: repo,
            message: message(),
        },
        _ if status == Some(429) => EcrError::Throttled {
            op,
            repository: repo,
            message: message(),
        },
        _ => {
            let detail = DisplayErrorContext(&err).to_string();
            EcrError::Other {
                op,
                message: match repository {
                    Some(r) => format!("repository {r:?}: {detail}"),
                    None => detail,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecr::config::http::HttpResponse;
    use aws_sdk_ecr::operation::list_tags_for_resource::ListTagsForResourceError;
    use aws_smithy_error_fixture::*;

    /// Builds SDK service errors the way the SDK's deserialiser would.
    mod aws_smithy_error_fixture {
        use super::*;
        use aws_sdk_ecr::error::ErrorMetadata;

        pub fn service_error(
            code: Option<&str>,
            status: u16,
        ) -> SdkError<ListTagsForResourceError> {
            let mut meta = ErrorMetadata::builder().message("the service said no");
            if let Some(c) = code {
                meta = meta.code(c);
            }
            let err = ListTagsForResourceError::generic(meta.build());
            let resp = HttpResponse::new(status.try_into().expect("status"), "{}".into());
            SdkError::service_error(err, resp)
        }
    }

    #[test]
    fn classifies_by_code_and_status() {
        let r = Some("mirror/x");
        let cases: Vec<(Option<&str>, u16, &str)> = vec![
            (Some("RepositoryNotFoundException"), 400, "NotFound"),
            (
                Some("RepositoryAlreadyExistsException"),
                400,
                "AlreadyExists",
            ),
            (Some("AccessDeniedException"), 400, "AccessDenied"),
            (Some("UnrecognizedClientException"), 400, "AccessDenied"),
            (Some("ThrottlingException"), 400, "Throttled"),
            (Some("TooManyRequestsException"), 400, "Throttled"),
            (None, 403, "AccessDenied"),
            (Some("SomethingElse"), 403, "AccessDenied"),
            (None, 401, "AccessDenied"),
            (None, 429, "Throttled"),
            (Some("SomethingElse"), 429, "Throttled"),
            (Some("ServerException"), 500, "Other"),
            (Some("InvalidParameterException"), 400, "Other"),
            (None, 500, "Other"),
        ];
        for (code, status, want) in cases {
            let e = classify("ListTagsForResource", r, service_error(code, status));
            let got = match &e {
                EcrError::NotFound { .. } => "NotFound",
                EcrError::AlreadyExists { .. } => "AlreadyExists",
                EcrError::AccessDenied { .. } => "AccessDenied",
                EcrError::Throttled { .. } => "Throttled",
                EcrError::Other { .. } => "Other",
            };
            assert_eq!(got, want, "{code:?} {status}: {e}");
            let text = e.to_string();
            assert!(text.contains("ListTagsForResource"), "{text}");
            assert!(text.contains("mirror/x"), "{text}");
        }
    }

    #[test]
    fn not_found_without_a_repository_is_other() {
        let e = classify(
            "DescribeRepositories",
            None,
            service_error(Some("RepositoryNotFoundException"), 400),
        );
        assert!(matches!(e, EcrError::Other { .. }), "{e:?}");
    }

    #[test]
    fn decodes_tokens() {
        let enc = base64::engine::general_purpose::STANDARD.encode("AWS:pa:ss");
        assert_eq!(
            decode_token(&enc).unwrap(),
            ("AWS".to_string(), "pa:ss".to_string())
        );
        for bad in [
            "%%%",
            &base64::engine::general_purpose::STANDARD.encode("nocolon"),
        ] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
        let empty = base64::engine::general_purpose::STANDARD.encode("AWS:");
        assert!(decode_token(&empty).is_err());
    }
}
