//! The main key, which seals endpoint signing secrets at rest: `HERALD_MAIN_KEY` (base64 of 32
//! bytes) if set, else the key file (`store.main_key_file`, by default `main.key` in the data
//! directory), generated from the OS CSPRNG with mode 0600 on first start. Back it up apart from
//! the data: a data directory without its key reveals no secret, and cannot sign either.

use std::path::{Path, PathBuf};

use base64::Engine;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum MainKeyError {
    #[error("HERALD_MAIN_KEY must be base64 of exactly 32 bytes")]
    BadEnv,
    #[error("the main key file {0} must hold base64 of exactly 32 bytes")]
    BadFile(PathBuf),
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

/// The main key for `config`, given `HERALD_MAIN_KEY`'s value.
pub fn load(config: &Config, from_env: Option<String>) -> Result<[u8; 32], MainKeyError> {
    if let Some(v) = from_env.filter(|v| !v.trim().is_empty()) {
        return decode(v.trim()).ok_or(MainKeyError::BadEnv);
    }
    let path = key_file(config);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(text.trim()).ok_or(MainKeyError::BadFile(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(&path),
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
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(path).map_err(io)?, text.as_bytes()).map_err(io)?;
    tracing::warn!(path = %path.display(), "generated a new main key; back it up apart from the data directory");
    Ok(key)
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
}
