//! The S3 backend's credentials: static ones, or an AWS SDK credentials provider the caller
//! built (the CLI builds the SDK's default chain, as the AWS CLI finds credentials: the storage
//! layer reads no environment). A provider's temporary credentials are refreshed before they
//! expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::aws::AwsCredential;
use zeroize::Zeroizing;

use cairn_format::error::{Error, Result};

/// Static credentials. The secret parts are wiped when dropped and never printed.
#[derive(Clone)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`: not secret, shown in messages.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Zeroizing<String>,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

/// Where the S3 client's credentials and region come from.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// Static credentials given directly (a program embedding the engine, tests). When set, the
    /// provider is not asked.
    pub credentials: Option<Credentials>,
    /// An SDK credentials provider (the CLI's: the SDK's default chain).
    pub provider: Option<SharedCredentialsProvider>,
    /// `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile's `region`.
    pub region: Option<String>,
    /// Where the settings came from, for messages.
    pub source: String,
}

/// The credential object_store signs with, from the SDK's provider, kept until five minutes
/// before it expires (the chain may run a process or ask a metadata service: not per request).
#[derive(Debug)]
pub(super) struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

/// How long before expiry a credential is replaced.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

impl SdkCredentials {
    /// Asks `provider` once now, so that no credentials at all is an error when the
    /// repository is opened, with a message that says where Cairn looked.
    pub async fn new(provider: SharedCredentialsProvider) -> Result<Self> {
        let this = SdkCredentials { provider, cached: tokio::sync::Mutex::new(None) };
        this.fetch().await.map_err(|e| {
            Error::InvalidInput(format!(
                "no S3 credentials ({}). Cairn looks where the AWS CLI does: AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY; the profile AWS_PROFILE names (or default) in ~/.aws/credentials and \
                 ~/.aws/config (static keys, role_arn, credential_process, SSO); a web identity token; the ECS \
                 container endpoint; EC2 instance metadata",
                super::error_chain(&e).trim_end_matches('.')
            ))
        })?;
        Ok(this)
    }

    async fn fetch(
        &self,
    ) -> std::result::Result<Arc<AwsCredential>, aws_credential_types::provider::error::CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|at| SystemTime::now() + REFRESH_BEFORE < at);
            if fresh {
                return Ok(credential.clone());
            }
        }
        let got = self.provider.provide_credentials().await?;
        let credential = Arc::new(AwsCredential {
            key_id: got.access_key_id().to_string(),
            secret_key: got.secret_access_key().to_string(),
            token: got.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), got.expiry()));
        Ok(credential)
    }
}

#[async_trait::async_trait]
impl object_store::CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.fetch().await.map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })
    }
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::SharedCredentialsProvider;

    use super::*;

    #[test]
    fn static_credentials_never_print_their_secrets() {
        let c = Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Zeroizing::new("secret-value".into()),
            session_token: Some(Zeroizing::new("token-value".into())),
        };
        let shown = format!("{c:?} {:?}", AwsSettings { credentials: Some(c.clone()), ..AwsSettings::default() });
        assert!(shown.contains("AKIDEXAMPLE"));
        assert!(!shown.contains("secret-value") && !shown.contains("token-value"), "{shown}");
    }

    #[test]
    fn credentials_are_reused_until_five_minutes_before_they_expire() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        #[derive(Debug)]
        struct Counting(Arc<AtomicUsize>, Option<SystemTime>);
        impl ProvideCredentials for Counting {
            fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                aws_credential_types::provider::future::ProvideCredentials::ready(Ok(
                    aws_credential_types::Credentials::new(format!("AKID{n}"), "s", None, self.1, "test"),
                ))
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for (expiry, calls_after_three) in [
            (None, 1),
            (Some(SystemTime::now() + Duration::from_secs(3600)), 1),
            (Some(SystemTime::now() + Duration::from_secs(60)), 3),
        ] {
            let calls = Arc::new(AtomicUsize::new(0));
            let provider = SharedCredentialsProvider::new(Counting(calls.clone(), expiry));
            let creds = rt.block_on(SdkCredentials::new(provider)).unwrap();
            for _ in 0..2 {
                let c = rt.block_on(object_store::CredentialProvider::get_credential(&creds)).unwrap();
                assert!(c.key_id.starts_with("AKID"));
            }
            assert_eq!(calls.load(Ordering::SeqCst), calls_after_three, "expiry {expiry:?}");
        }
    }

    #[test]
    fn no_credentials_anywhere_says_where_to_put_them() {
        #[derive(Debug)]
        struct Nothing;
        impl ProvideCredentials for Nothing {
            fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded("no providers in chain"),
                ))
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let e = rt.block_on(SdkCredentials::new(SharedCredentialsProvider::new(Nothing))).unwrap_err().to_string();
        assert!(e.contains("no S3 credentials") && e.contains("AWS_PROFILE"), "{e}");
    }
}
