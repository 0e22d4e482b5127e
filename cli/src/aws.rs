//! S3 credentials and region, found as the AWS CLI and SDKs find them, through the AWS SDK's
//! own default chain: the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`), the profile named by `AWS_PROFILE` (or `default`) in the shared files
//! (static keys, `role_arn` with `source_profile` or `credential_source`, `credential_process`,
//! SSO), web identity tokens (`AWS_WEB_IDENTITY_TOKEN_FILE`, as on EKS), the ECS container
//! endpoint, and the EC2 instance metadata service (`AWS_EC2_METADATA_DISABLED=true` skips
//! it). The engine reads no environment: the command line builds the chain and hands it over.
//!
//! The region comes from `AWS_REGION`, `AWS_DEFAULT_REGION` or the profile, never from instance
//! metadata: a machine that is not on EC2 would wait seconds for an answer that never comes.

use aws_config::environment::region::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use cairn_engine::storage::s3::AwsSettings;

/// The region the chain signs its own requests (STS) for when nothing names one.
const FALLBACK_REGION: &str = "us-east-1";

/// The SDK's default credential chain and the region from the environment or profile.
/// Nothing is fetched yet: the chain runs when the storage first needs credentials.
pub fn settings_from_environment() -> anyhow::Result<AwsSettings> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the AWS configuration runtime: {e}"))?;
    Ok(runtime.block_on(async {
        let region = RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
            .or_else(ProfileFileRegionProvider::new())
            .region()
            .await;
        // IMDS, STS (role_arn, web identity) and SSO are reached over rustls with ring, as
        // object_store reaches S3; no other TLS stack is built in.
        let http =
            aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
        let config = ProviderConfig::default().with_http_client(http);
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .configure(config)
            .region(region.clone().unwrap_or_else(|| aws_config::Region::new(FALLBACK_REGION)))
            .build()
            .await;
        AwsSettings {
            credentials: None,
            provider: Some(SharedCredentialsProvider::new(chain)),
            region: region.map(|r| r.to_string()),
            source: "the AWS default credential chain".into(),
        }
    }))
}
