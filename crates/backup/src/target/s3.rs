//! An S3 bucket (AWS or any S3-compatible store), through opendal.
//!
//! Write-if-absent: a PUT (or the completion of a multipart upload) with
//! `If-None-Match: *`, which the store refuses when the key exists, even if
//! it appeared after `Target::put`'s HEAD. Protection against a writer that ignores that rule
//! comes from the bucket: Object Lock and a key without delete rights (see
//! [`super::s3_object_lock_advice`]).

use std::path::Path;

use opendal::{ErrorKind, Operator, services::S3};

use crate::config::TargetConfig;
use anyhow::{Context, Result};

use super::{Object, Payload};

pub struct S3Target {
    op: Operator,
}

/// Large objects (the dump) go up in parts of this size.
const PART: usize = 16 * 1024 * 1024;

impl S3Target {
    pub fn open(cfg: &TargetConfig, bucket: String, prefix: String) -> Result<S3Target> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut b = S3::default()
            .bucket(&bucket)
            .root(&format!("/{prefix}"))
            .region(
                &cfg.region
                    .clone()
                    .or_else(|| env("AWS_REGION"))
                    .or_else(|| env("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|| "us-east-1".into()),
            )
            // Credentials come from the config or AWS_* only: never from
            // an instance metadata service the admin did not mean to use.
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(ep) = cfg.endpoint.clone().or_else(|| env("AWS_ENDPOINT_URL")) {
            b = b.endpoint(&ep);
        }
        if let Some(k) = cfg
            .access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
        {
            b = b.access_key_id(&k);
        }
        if let Some(k) = cfg
            .secret_access_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
        {
            b = b.secret_access_key(&k);
        }
        let op = Operator::new(b).context("S3 settings")?.finish();
        Ok(S3Target { op })
    }

    pub async fn list(&self, dir: &str) -> Result<Vec<Object>> {
        let prefix = format!("{dir}/");
        let entries = self
            .op
            .list_with(&prefix)
            .await
            .with_context(|| format!("listing {prefix}"))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| Object {
                name: e.name().to_string(),
                size: e.metadata().content_length(),
                modified: e
                    .metadata()
                    .last_modified()
                    .map(std::time::SystemTime::from),
            })
            .collect())
    }

    pub async fn write_if_absent(&self, name: &str, payload: Payload<'_>) -> Result<bool> {
        let written = match payload {
            Payload::Bytes(b) => self
                .op
                .write_with(name, b.to_vec())
                .if_not_exists(true)
                .await
                .map(|_| ()),
            Payload::File(src) => self.put_file(name, src).await,
        };
        match written {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::ConditionNotMatch => Ok(false),
            Err(e) => Err(anyhow::Error::msg(e.to_string())),
        }
    }

    async fn put_file(&self, name: &str, src: &Path) -> opendal::Result<()> {
        let mut w = self
            .op
            .writer_with(name)
            .if_not_exists(true)
            .chunk(PART)
            .await?;
        let mut f = std::fs::File::open(src).map_err(io_err)?;
        let mut buf = vec![0u8; PART];
        loop {
            let n = read_full(&mut f, &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            if let Err(e) = w.write(buf[..n].to_vec()).await {
                let _ = w.abort().await;
                return Err(e);
            }
        }
        w.close().await.map(|_| ())
    }

    pub async fn get(&self, name: &str) -> Result<Vec<u8>> {
        Ok(self.op.read(name).await.context("read")?.to_vec())
    }

    pub async fn get_to_file(&self, name: &str, dest: &Path) -> Result<u64> {
        use std::io::Write;
        let size = self.op.stat(name).await.context("stat")?.content_length();
        let mut out =
            std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
        let mut at = 0u64;
        while at < size {
            let end = (at + PART as u64).min(size);
            let buf = self
                .op
                .read_with(name)
                .range(at..end)
                .await
                .context("read")?;
            for chunk in buf {
                out.write_all(&chunk)
                    .with_context(|| format!("writing {}", dest.display()))?;
            }
            at = end;
        }
        Ok(size)
    }

    pub async fn exists(&self, name: &str) -> Result<bool> {
        match self.op.stat(name).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(anyhow::Error::msg(format!("stat {name}: {e}"))),
        }
    }

    pub async fn delete(&self, name: &str) -> Result<()> {
        self.op.delete(name).await.context("delete")
    }
}

fn io_err(e: std::io::Error) -> opendal::Error {
    opendal::Error::new(ErrorKind::Unexpected, "reading the spool file").set_source(e)
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut n = 0;
    while n < buf.len() {
        let m = f.read(&mut buf[n..])?;
        if m == 0 {
            break;
        }
        n += m;
    }
    Ok(n)
}
