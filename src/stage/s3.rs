//! S3 staging through aws-sdk-s3: the standard credential chain and region, an optional
//! endpoint for S3-compatible stores, SSE (`AES256`, or the bucket's default with `SLUICE_S3_SSE=bucket`) on every put and multipart upload
//! for large objects. The only file that calls into the AWS SDK.

use std::path::{Path, PathBuf};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use aws_sdk_s3::Client;
use tokio::io::AsyncWriteExt;

use super::{Backend, LocalObject, StageError};

/// Objects above this size go up in parts of this size.
const MULTIPART_PART: u64 = 16 << 20;

pub struct S3Staging {
    client: Client,
    bucket: String,
    prefix: String,
    /// Downloads and parts being uploaded; removed with the store.
    work: tempfile::TempDir,
    /// The encryption asked for on every put: `AES256` (SSE-S3), or none when
    /// `SLUICE_S3_SSE=bucket` leaves it to the bucket's default (SSE-KMS with its key).
    sse: Option<ServerSideEncryption>,
}

/// Why an AWS call got no answer from `service` (a timeout, no route, no credentials),
/// in one line with what to do (`unreachable`, `no_credentials`), never the SDK's debug
/// text. Any AWS SDK's error: they share this type.
pub fn unanswered<E, R>(e: &SdkError<E, R>, service: &str, unreachable: &str, no_credentials: &str) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::DispatchFailure(d) if d.is_timeout() => format!("{service} did not answer in time"),
        SdkError::TimeoutError(_) => format!("{service} did not answer in time"),
        SdkError::DispatchFailure(d) if d.is_io() => format!("cannot reach {service}; {unreachable}"),
        _ => {
            let text = DisplayErrorContext(e).to_string();
            if text.contains("credentials") {
                format!("no AWS credentials were found; {no_credentials}")
            } else {
                crate::util::clip(text.lines().next().unwrap_or_default(), 300)
            }
        }
    }
}

/// The variable that leaves a staged object's encryption to the bucket (`bucket`).
pub const SSE_VAR: &str = "SLUICE_S3_SSE";

impl S3Staging {
    pub async fn new(
        bucket: &str,
        prefix: &str,
        region: Option<String>,
        endpoint: Option<String>,
        path_style: bool,
    ) -> Result<Self, StageError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style);
        if shared.region().is_none() {
            // Any region signs requests for S3-compatible stores; AWS itself redirects.
            conf = conf.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(e) = endpoint {
            conf = conf.endpoint_url(e);
        }
        Self::from_client(Client::from_conf(conf.build()), bucket, prefix)
    }

    /// A store over a client built elsewhere (tests, custom credentials).
    pub fn from_client(client: Client, bucket: &str, prefix: &str) -> Result<Self, StageError> {
        // What killed processes left in the temporary folder goes first.
        let tmp = std::env::temp_dir();
        crate::util::sweep_orphans(&tmp);
        let work = crate::util::temp_dir().map_err(|e| StageError::io("create a temporary folder in", &tmp, e))?;
        let sse = match std::env::var(SSE_VAR).as_deref() {
            Ok("bucket") => None,
            Ok("AES256") | Err(_) => Some(ServerSideEncryption::Aes256),
            Ok(other) => {
                return Err(StageError::Config(format!(
                    "{SSE_VAR}={other}: use AES256 (the default) or bucket (the bucket's default encryption, such as SSE-KMS)"
                )))
            }
        };
        Ok(S3Staging {
            sse,
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            work,
        })
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// An error of an S3 call, in one line that says what to do.
    fn sdk_err<E>(&self, op: &'static str, key: &str, e: SdkError<E, HttpResponse>) -> StageError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let bucket = &self.bucket;
        let detail = match &e {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                match (se.err().code(), status) {
                    (Some("NoSuchBucket"), _) | (None, 404) => {
                        format!("bucket `{bucket}` does not exist; create it or correct `staging.location`")
                    }
                    (Some("InvalidAccessKeyId" | "NotSignedUp"), _) => "the server does not know this AWS access key id; check AWS_ACCESS_KEY_ID (or the profile in use)".into(),
                    (Some("SignatureDoesNotMatch"), _) => "the AWS secret key does not match the access key id; check AWS_SECRET_ACCESS_KEY (or the profile in use)".into(),
                    (Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException"), _) | (None, 301) => format!(
                        "bucket `{bucket}` is in another region; set `staging.region` (or AWS_REGION) to the bucket's region"
                    ),
                    (Some("AccessDenied"), _) | (None, 403) => format!(
                        "access denied; the credentials in use may not {op} in bucket `{bucket}`: check the IAM policy (and the bucket policy)"
                    ),
                    (Some(code), _) => format!(
                        "{code} (HTTP {status}){}",
                        se.err().message().map(|m| format!(": {m}")).unwrap_or_default()
                    ),
                    (None, _) => format!("HTTP {status}"),
                }
            }
            _ => unanswered(
                &e,
                "the S3 endpoint",
                "check `staging.endpoint` (or AWS_ENDPOINT_URL_S3) and the network",
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run where an IAM role applies",
            ),
        };
        StageError::S3 {
            op,
            bucket: self.bucket.clone(),
            key: self.full_key(key),
            detail,
        }
    }

    fn err<E: std::error::Error + 'static>(&self, op: &'static str, key: &str, e: E) -> StageError {
        StageError::S3 {
            op,
            bucket: self.bucket.clone(),
            key: self.full_key(key),
            detail: DisplayErrorContext(e).to_string(),
        }
    }

    async fn put_multipart(&self, key: &str, path: &Path, size: u64) -> Result<(), StageError> {
        let full = self.full_key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .set_server_side_encryption(self.sse.clone())
            .content_type("application/gzip")
            .send()
            .await
            .map_err(|e| self.sdk_err("create multipart upload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            let mut offset = 0;
            let mut number = 1;
            while offset < size {
                let len = MULTIPART_PART.min(size - offset);
                let body = ByteStream::read_from()
                    .path(path)
                    .offset(offset)
                    .length(Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| self.err("read part for upload", key, e))?;
                let done = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.sdk_err("upload part", key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(done.e_tag().map(String::from))
                        .build(),
                );
                offset += len;
                number += 1;
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| self.sdk_err("complete multipart upload", key, e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

impl Backend for S3Staging {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StageError> {
        let size = std::fs::metadata(path)
            .map_err(|e| StageError::io("stat", path, e))?
            .len();
        if size > MULTIPART_PART {
            return self.put_multipart(key, path, size).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| self.err("read file for upload", key, e))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .set_server_side_encryption(self.sse.clone())
            .content_type("application/gzip")
            .body(body)
            .send()
            .await
            .map_err(|e| self.sdk_err("put", key, e))?;
        Ok(())
    }

    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .set_server_side_encryption(self.sse.clone())
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.sdk_err("put", key, e))?;
        Ok(())
    }

    async fn probe(&self, pipeline: &str, _write: bool) -> Result<(), StageError> {
        // A listing, not HEAD: its error has a body, so the cause can be told. Of the
        // pipeline's own prefix, which is all its role may list on AWS.
        let own = format!("{pipeline}/");
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full_key(&own))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.sdk_err("list", &own, e))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.sdk_err("delete", key, e))?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StageError> {
        let out = self.get(key).await?;
        let data = out.body.collect().await.map_err(|e| self.err("read", key, e))?;
        Ok(data.into_bytes().to_vec())
    }

    async fn open(&self, key: &str) -> Result<LocalObject, StageError> {
        let mut out = self.get(key).await?;
        let dir = self.work_dir();
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io("create", &dir, e))?;
        let temp = crate::util::temp_file_in(&dir)
            .map_err(|e| StageError::io("create temporary file in", &dir, e))?
            .into_temp_path();
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| StageError::io("create", &temp, e))?;
        while let Some(chunk) = out.body.next().await {
            let chunk = chunk.map_err(|e| self.err("download", key, e))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| StageError::io("write", &temp, e))?;
        }
        file.flush().await.map_err(|e| StageError::io("write", &temp, e))?;
        Ok(LocalObject::temporary(temp))
    }

    async fn verify(&self, object: &super::manifest::ObjectManifest) -> Result<(), String> {
        // The size, from a HEAD; the SHA-256 is checked again when the object is loaded.
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(&object.key))
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(se) if se.err().is_not_found() => "is gone".to_string(),
                _ => self.sdk_err("head", &object.key, e).to_string(),
            })?;
        let bytes = head.content_length().unwrap_or(-1);
        if bytes != object.bytes as i64 {
            return Err(format!("holds {bytes} bytes, not the {} staged", object.bytes));
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        let full_prefix = self.full_key(prefix);
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&full_prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.sdk_err("list", prefix, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(|k| k[strip.min(k.len())..].to_string()),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn work_dir(&self) -> PathBuf {
        self.work.path().to_path_buf()
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl S3Staging {
    async fn get(&self, key: &str) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StageError> {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| match &e {
                SdkError::ServiceError(se) if se.err().is_no_such_key() => {
                    StageError::NotFound { key: key.to_string() }
                }
                _ => self.sdk_err("get", key, e),
            })
    }
}
