//! Where the key-encryption key comes from: `SIGIL_KEK` (via [`Config::kek`]) or a key
//! file `<data_dir>/kek` that only its owner may read.
//!
//! [`Config::kek`]: crate::Config::kek

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sigil_pki::Kek;

use crate::Error;

/// File name of the generated KEK inside `data_dir`.
pub const KEK_FILE: &str = "kek";

/// The KEK: parsed from `configured` when given, else read from (or first created in)
/// `<data_dir>/kek`. Error messages never contain key material.
pub(crate) async fn load(configured: Option<&str>, data_dir: &Path) -> Result<Kek, Error> {
    if let Some(text) = configured {
        return parse(text);
    }
    let path = data_dir.join(KEK_FILE);
    match create_new(&path) {
        Ok(kek) => {
            tracing::info!(path = %path.display(), "generated a new key-encryption key file");
            Ok(kek)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read_existing(&path).await,
        Err(e) => Err(Error::Kek(format!(
            "cannot create KEK file {}: {e}",
            path.display()
        ))),
    }
}

/// Parse a configured KEK; the error never echoes the value.
pub(crate) fn parse(text: &str) -> Result<Kek, Error> {
    Kek::parse(text).map_err(|_| {
        Error::Kek("SIGIL_KEK must be 64 hex characters or base64 of 32 bytes".to_owned())
    })
}

/// Create `path` exclusively, mode 0600, holding a fresh KEK.
fn create_new(path: &Path) -> std::io::Result<Kek> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let kek = Kek::generate();
    file.write_all(format!("{}\n", kek.to_base64()).as_bytes())?;
    file.sync_all()?;
    Ok(kek)
}

async fn read_existing(path: &Path) -> Result<Kek, Error> {
    check_permissions(path)?;
    // Another issuer starting at the same moment may still be writing the file it
    // just created: give it a moment before calling the content bad.
    let mut attempts = 0;
    loop {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Kek(format!("cannot read KEK file {}: {e}", path.display())))?;
        match Kek::parse(&text) {
            Ok(kek) => return Ok(kek),
            Err(_) if attempts < 20 && text.trim().is_empty() => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                return Err(Error::Kek(format!(
                    "KEK file {} must hold 64 hex characters or base64 of 32 bytes",
                    path.display()
                )));
            }
        }
    }
}

/// Refuse a key file that anyone but its owner can read or write.
fn check_permissions(path: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|e| Error::Kek(format!("cannot stat KEK file {}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::Kek(format!(
                "KEK file {} is accessible by group or others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    Ok(())
}

/// Path of the KEK file for `data_dir` (for docs and tests).
pub fn kek_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEK_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_is_created_once_with_owner_only_mode_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested");
        let first = load(None, &data_dir).await.unwrap();
        let again = load(None, &data_dir).await.unwrap();
        assert_eq!(first.to_base64(), again.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(kek_path(&data_dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn group_readable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        load(None, dir.path()).await.unwrap();
        let path = kek_path(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = load(None, dir.path()).await.unwrap_err().to_string();
        assert!(
            err.contains("accessible by group or others") && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn configured_kek_wins_and_bad_values_are_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "00".repeat(32);
        let kek = load(Some(&hex), dir.path()).await.unwrap();
        assert_eq!(kek.to_base64(), Kek::from_bytes([0; 32]).to_base64());
        assert!(
            !kek_path(dir.path()).exists(),
            "no file when SIGIL_KEK is set"
        );
        let err = load(Some("supersecretbutshort"), dir.path())
            .await
            .unwrap_err()
            .to_string();
        assert!(!err.contains("supersecret"), "{err}");
    }

    #[tokio::test]
    async fn garbage_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = kek_path(dir.path());
        std::fs::write(&path, "not a key").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let err = load(None, dir.path()).await.unwrap_err().to_string();
        assert!(err.contains("must hold 64 hex characters"), "{err}");
    }
}
