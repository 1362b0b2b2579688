//! A daemon's state directory: certificates, credentials and databases live there, so a new
//! one is created readable by its owner only.

use std::path::Path;

/// Creates `path` (and parents) if missing; a directory this call creates gets mode 0700.
pub fn create(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_state_dirs_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b");
        super::create(&p).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        super::create(&p).unwrap();
    }
}
