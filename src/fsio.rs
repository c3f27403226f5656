//! Crash-safe writes of the files Herald keeps outside sled (the main key, the self-signed TLS
//! pair) and durable directories. A file is written whole to a temporary file in the same
//! directory, fsync'd, then renamed (or linked, to never replace) over its name, and the directory
//! is fsync'd, so after a power cut the name holds either nothing or the complete new content.
//! A directory made here is fsync'd into its parent, so its name survives a power cut too.
//! Everything Herald writes is private to its user: directories made here are 0700, and
//! [`restrict_umask`] makes the files the storage engine creates 0600 (see [`restrict_tree`] for
//! ones made before).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replace `path` with `bytes` atomically and durably; a new file gets `mode` (unix).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent(path))
}

/// Create `path` with `bytes` durably, never replacing an existing file: `Err` of kind
/// `AlreadyExists` if it exists, also when another process made it first in a race. The file
/// appears complete or not at all, because it is linked under its name only once fsync'd (a hard
/// link refuses an existing name, where rename would replace it).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp(path, bytes, mode)?;
    let linked = std::fs::hard_link(&tmp, path);
    // The temporary name goes either way; were it left, it would only be a copy with the same mode.
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_dir(parent(path))
}

/// fsync the directory `dir`, making the names created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    // A directory opens read-only on Linux, and fsync on that handle is what commits its entries.
    match File::open(dir)?.sync_all() {
        // The file system cannot sync a directory (some network and FUSE ones): nothing more to do.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// Mode of the directories Herald makes.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of the files Herald makes.
pub const PRIVATE_FILE: u32 = 0o600;

/// `std::fs::create_dir_all`, with every directory it makes private (0700, whatever the umask)
/// and fsync'd into its parent.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut missing: Vec<&Path> = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        missing.push(d);
        cur = d.parent();
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    builder.create(dir)?;
    // Top down, so each parent's entry is durable before its children's.
    for d in missing.iter().rev() {
        set_mode(d, PRIVATE_DIR)?;
        sync_dir(parent(d))?;
    }
    Ok(())
}

/// Make the new directory `dir` (private, fsync'd into its parent); `AlreadyExists` if the name
/// is taken, whatever by (a symbolic link included).
pub fn create_dir_new(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR);
    builder.create(dir)?;
    set_mode(dir, PRIVATE_DIR)?;
    sync_dir(parent(dir))
}

/// From now on, files and directories this process creates are private to its user, whoever
/// creates them (the storage engine opens its files with the default mode). Unix only.
pub fn restrict_umask() {
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Tighten `root` and everything under it to [`PRIVATE_DIR`] and [`PRIVATE_FILE`], never
/// following a symbolic link. Returns how many entries changed. A missing `root` is no error.
pub fn restrict_tree(root: &Path) -> io::Result<usize> {
    let mut changed = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let want = if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                todo.push(entry?.path());
            }
            PRIVATE_DIR
        } else if meta.is_file() {
            PRIVATE_FILE
        } else {
            // Links are left alone: changing one's mode would change its target's.
            continue;
        };
        #[cfg(unix)]
        if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777 != want {
            set_mode(&path, want)?;
            changed += 1;
        }
        #[cfg(not(unix))]
        let _ = want;
    }
    Ok(changed)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `bytes` to a new temporary file next to `path` and fsync it.
fn write_temp(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut salt = [0u8; 8];
    getrandom::fill(&mut salt).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", u64::from_le_bytes(salt)));
    let tmp = parent(path).join(tmp_name);

    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names in `dir` other than `keep`: leftover temporary files.
    fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !keep.contains(&n.as_str()))
            .collect()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        write_atomic(&path, b"first", 0o600).unwrap();
        write_atomic(&path, b"second", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(others(dir.path(), &["cert.pem"]).is_empty());
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn write_new_never_replaces_and_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.key");
        write_new(&path, b"one", 0o600).unwrap();
        let again = write_new(&path, b"two", 0o600).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(others(dir.path(), &["main.key"]).is_empty());
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn racing_write_new_calls_make_one_winner_whose_file_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.key");
        let results: Vec<(Vec<u8>, bool)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|i| {
                    let path = &path;
                    s.spawn(move || {
                        let mine = vec![b'a' + i; 4096];
                        let won = match write_new(path, &mine, 0o600) {
                            Ok(()) => true,
                            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                            Err(e) => panic!("{e}"),
                        };
                        (mine, won)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<_> = results.iter().filter(|(_, won)| *won).collect();
        assert_eq!(winners.len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), winners[0].0);
        assert!(others(dir.path(), &["main.key"]).is_empty());
    }

    #[test]
    fn create_dir_all_makes_nested_directories_and_accepts_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        sync_dir(&deep).unwrap();
        write_atomic(&deep.join("f"), b"x", 0o644).unwrap();
        assert_eq!(std::fs::read(deep.join("f")).unwrap(), b"x");
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_made_private_and_wide_trees_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        create_dir_all(&deep).unwrap();
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&deep), 0o700);
        let new = dir.path().join("new");
        create_dir_new(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        assert_eq!(
            create_dir_new(&new).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );

        let file = deep.join("f");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o755)).unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"y").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, deep.join("link")).unwrap();
        assert_eq!(restrict_tree(&dir.path().join("a")).unwrap(), 2);
        assert_eq!((mode(&deep), mode(&file)), (0o700, 0o600));
        assert_eq!(mode(&outside), 0o644, "a link's target is not touched");
        assert_eq!(restrict_tree(&dir.path().join("a")).unwrap(), 0);
        assert_eq!(restrict_tree(&dir.path().join("missing")).unwrap(), 0);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/file");
        assert!(write_atomic(&missing, b"x", 0o600).is_err());
        assert!(write_new(&missing, b"x", 0o600).is_err());
        assert!(others(dir.path(), &[]).is_empty());
    }
}
