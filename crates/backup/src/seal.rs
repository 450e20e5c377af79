//! Sealing: zstd, then age encryption to the recipients. Compression comes
//! first because ciphertext does not compress. Opening needs an identity
//! (private key) file, which lives off the server.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The age recipients (public keys) everything is encrypted to.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
    zstd_level: i32,
}

impl Recipients {
    pub fn parse(keys: &[String], zstd_level: i32) -> Result<Recipients> {
        if keys.is_empty() {
            bail!(
                "backup.recipients is empty: snapshots are always encrypted; generate a key pair \
                 with `age-keygen` off this server and put its public key (age1…) there"
            );
        }
        let keys = keys
            .iter()
            .map(|k| {
                k.parse::<age::x25519::Recipient>()
                    .map_err(|e| anyhow::Error::msg(format!("backup.recipients: {k:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Recipients { keys, zstd_level })
    }

    /// Compresses and encrypts everything `input` yields into `out`;
    /// returns `out` so callers can flush or sync it.
    pub fn seal<R: Read, W: Write>(&self, mut input: R, out: W) -> Result<W> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|k| k as &dyn age::Recipient))
                .context("age")?;
        let age_writer = encryptor.wrap_output(out).context("age")?;
        let mut z =
            zstd::stream::write::Encoder::new(age_writer, self.zstd_level).context("zstd")?;
        io::copy(&mut input, &mut z).context("sealing")?;
        let age_writer = z.finish().context("zstd")?;
        age_writer.finish().context("age")
    }

    pub fn seal_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.seal(data, Vec::with_capacity(data.len() / 2 + 256))
    }
}

/// The age identities (private keys) that open snapshots.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl Identities {
    /// Reads an age identity file (`age-keygen` output: `AGE-SECRET-KEY-1…`).
    pub fn from_file(path: &Path) -> Result<Identities> {
        let file = age::IdentityFile::from_file(path.to_string_lossy().into_owned())
            .with_context(|| format!("reading the identity file {}", path.display()))?;
        let keys = file
            .into_identities()
            .with_context(|| format!("identity file {}", path.display()))?;
        if keys.is_empty() {
            bail!("identity file {} holds no age identity", path.display());
        }
        Ok(Identities { keys })
    }

    /// A reader of the plaintext of a sealed stream.
    pub fn open<'a, R: Read + 'a>(&'a self, sealed: R) -> Result<Box<dyn Read + 'a>> {
        let decryptor = age::Decryptor::new(sealed).context("not an age file")?;
        let reader = decryptor
            .decrypt(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .context("cannot decrypt (wrong --identity?)")?;
        let z = zstd::stream::read::Decoder::new(reader).context("zstd")?;
        Ok(Box::new(z))
    }

    /// The plaintext of a sealed object held in memory.
    pub fn open_bytes(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open(sealed)?
            .read_to_end(&mut out)
            .context("decrypting")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn sealed_data_opens_only_with_the_identity() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let r = Recipients::parse(&[id.to_public().to_string()], 3).unwrap();
        let plain = b"hello filestore ".repeat(1000);
        let sealed = r.seal_bytes(&plain).unwrap();
        assert!(sealed.len() < plain.len(), "zstd ran before encryption");
        assert!(!sealed.windows(5).any(|w| w == b"hello"));

        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.txt");
        std::fs::write(&key, id.to_string().expose_secret()).unwrap();
        let ids = Identities::from_file(&key).unwrap();
        assert_eq!(ids.open_bytes(&sealed).unwrap(), plain);

        std::fs::write(&key, other.to_string().expose_secret()).unwrap();
        let wrong = Identities::from_file(&key).unwrap();
        assert!(wrong.open_bytes(&sealed).is_err());
    }

    #[test]
    fn no_recipient_is_a_clear_error() {
        let e = Recipients::parse(&[], 3).err().unwrap();
        assert!(e.to_string().contains("backup.recipients"));
    }
}
