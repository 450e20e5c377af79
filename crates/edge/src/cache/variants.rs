//! Compressed variants of a cached body, made once per encoding and kept
//! with the entry. Made once, they can afford stronger levels than the
//! per-request compressor (`stage::compress`): gzip 6, brotli 8, zstd 12.

use async_compression::Level;
use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use crate::encoding::Encoding;

#[derive(Default)]
pub struct Variants {
    cells: [OnceCell<Bytes>; 3],
}

impl Variants {
    /// The variant for `enc`, and whether this call made it. Concurrent
    /// callers wait for the one compression.
    pub async fn get(&self, enc: Encoding, body: &Bytes) -> (Bytes, bool) {
        let cell = &self.cells[match enc {
            Encoding::Zstd => 0,
            Encoding::Brotli => 1,
            Encoding::Gzip => 2,
        }];
        let mut made = false;
        let v = cell
            .get_or_init(|| async {
                made = true;
                compress(enc, body.clone()).await
            })
            .await
            .clone();
        (v, made)
    }
}

/// Compresses on the blocking pool: a bundle of a few MB takes tens of
/// milliseconds, which must not stall the threads carrying connections.
pub async fn compress(enc: Encoding, body: Bytes) -> Bytes {
    let handle = tokio::runtime::Handle::current();
    let job = tokio::task::spawn_blocking(move || {
        handle.block_on(async move {
            let mut out = Vec::with_capacity(body.len() / 3 + 64);
            let input: &[u8] = &body;
            let r = match enc {
                Encoding::Gzip => {
                    GzipEncoder::with_quality(input, Level::Precise(6))
                        .read_to_end(&mut out)
                        .await
                }
                Encoding::Brotli => {
                    BrotliEncoder::with_quality(input, Level::Precise(8))
                        .read_to_end(&mut out)
                        .await
                }
                Encoding::Zstd => {
                    ZstdEncoder::with_quality(input, Level::Precise(12))
                        .read_to_end(&mut out)
                        .await
                }
            };
            r.expect("compressing an in-memory buffer cannot fail");
            Bytes::from(out)
        })
    });
    job.await.expect("the compressor does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn made_once_and_standard() {
        let v = Variants::default();
        let body = Bytes::from("console.log('odoo');\n".repeat(2000));
        let (gz, made) = v.get(Encoding::Gzip, &body).await;
        assert!(made);
        let (again, made) = v.get(Encoding::Gzip, &body).await;
        assert!(!made);
        assert_eq!(gz, again);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let (br, _) = v.get(Encoding::Brotli, &body).await;
        assert!(br.len() < body.len() / 10);
    }
}
