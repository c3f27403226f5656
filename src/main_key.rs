//! The main key, which seals endpoint signing secrets at rest: `HERALD_MAIN_KEY` (base64 of 32
//! bytes) if set, else the key file (`store.main_key_file`, by default `main.key` in the data
//! directory), generated from the OS CSPRNG with mode 0600 on first start and written crash-safely
//! (never over an existing file). Back it up apart from the data: a data directory without its
//! key reveals no secret, and cannot sign either.

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MainKeyError {
    #[error("HERALD_MAIN_KEY must be base64 of exactly 32 bytes")]
    BadEnv,
    #[error("the main key file {0} is empty or damaged (it must hold base64 of exactly 32 bytes): restore it from your backup of the main key, or give the key in HERALD_MAIN_KEY. A new key cannot open the endpoint secrets already stored; only if this data directory holds no data yet, delete the file to have a new key made")]
    BadFile(PathBuf),
    #[error("the main key file {path} is missing, but {store} already holds a store sealed with a main key: restore the key file from your backup of the main key, or give the key in HERALD_MAIN_KEY (a new key cannot open the endpoint secrets already stored)")]
    Missing { path: PathBuf, store: PathBuf },
    #[error("cannot read or create the main key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a main key: {0}")]
    Random(String),
}

/// Where the key file is for this configuration.
pub fn key_file(config: &Config) -> PathBuf {
    config
        .store
        .main_key_file
        .clone()
        .unwrap_or_else(|| config.server.data_dir.join("main.key"))
}

/// The main key for `config`, given `HERALD_MAIN_KEY`'s value; made on first start.
pub fn load(config: &Config, from_env: Option<String>) -> Result<[u8; 32], MainKeyError> {
    match existing(config, from_env)? {
        Some(key) => Ok(key),
        None => generate(&key_file(config)),
    }
}

/// Whether [`load`] would succeed, without making a key (for `herald check-config`).
pub fn check(config: &Config, from_env: Option<String>) -> Result<(), MainKeyError> {
    existing(config, from_env).map(|_| ())
}

/// The key given or kept, or `None` when a new one may be made.
fn existing(config: &Config, from_env: Option<String>) -> Result<Option<[u8; 32]>, MainKeyError> {
    if let Some(v) = from_env.filter(|v| !v.trim().is_empty()) {
        return decode(v.trim()).map(Some).ok_or(MainKeyError::BadEnv);
    }
    let path = key_file(config);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(text.trim())
            .map(Some)
            .ok_or(MainKeyError::BadFile(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A store exists only after a key was made or given: a new key could not open it.
            let store = config.server.data_dir.join(crate::store::FORMAT_DIR);
            if store.exists() {
                return Err(MainKeyError::Missing { path, store });
            }
            Ok(None)
        }
        Err(source) => Err(MainKeyError::Io { path, source }),
    }
}

fn decode(text: &str) -> Option<[u8; 32]> {
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(text).ok())
        .and_then(|b| b.try_into().ok())
}

fn generate(path: &Path) -> Result<[u8; 32], MainKeyError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| MainKeyError::Random(e.to_string()))?;
    let io = |source| MainKeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::fsio::create_dir_all(dir).map_err(io)?;
    }
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    match crate::fsio::write_new(path, text.as_bytes(), 0o600) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "generated a new main key; back it up apart from the data directory");
            Ok(key)
        }
        // Another start made it first: its key is the one (the file appears only complete).
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(io)?;
            decode(text.trim()).ok_or_else(|| MainKeyError::BadFile(path.to_path_buf()))
        }
        Err(source) => Err(io(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut c = Config::default();
        c.server.data_dir = dir.to_path_buf();
        c
    }

    #[test]
    fn a_key_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let a = load(&c, None).unwrap();
        let b = load(&c, None).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_file(&c))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn the_environment_wins_and_bad_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let k = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        assert_eq!(load(&c, Some(k)).unwrap(), [5u8; 32]);
        assert!(
            !key_file(&c).exists(),
            "no file made when the environment gives the key"
        );
        assert!(matches!(
            load(&c, Some("c2hvcnQ=".into())),
            Err(MainKeyError::BadEnv)
        ));
        std::fs::write(key_file(&c), "not base64!").unwrap();
        assert!(matches!(load(&c, None), Err(MainKeyError::BadFile(_))));
    }

    #[test]
    fn an_empty_or_cut_key_file_is_an_error_that_says_to_restore_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let whole = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        for broken in ["", "\n", &whole[..20]] {
            std::fs::write(key_file(&c), broken).unwrap();
            let err = load(&c, None).unwrap_err();
            assert!(matches!(err, MainKeyError::BadFile(_)), "{err}");
            assert!(
                err.to_string().contains("restore it from your backup"),
                "{err}"
            );
            assert_eq!(
                std::fs::read_to_string(key_file(&c)).unwrap(),
                broken,
                "never replaced by a new key"
            );
        }
    }

    #[test]
    fn no_key_is_made_for_a_data_directory_that_already_holds_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::create_dir(dir.path().join(crate::store::FORMAT_DIR)).unwrap();
        let err = load(&c, None).unwrap_err();
        assert!(matches!(err, MainKeyError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("restore the key file"), "{err}");
        assert!(!key_file(&c).exists());
    }

    #[test]
    fn racing_first_starts_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(&dir.path().join("fresh"));
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load(&c, None).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(load(&c, None).unwrap(), keys[0]);
    }
}
