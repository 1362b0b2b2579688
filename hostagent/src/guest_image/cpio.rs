//! A writer for cpio archives in the SVR4 "newc" format (magic `070701`), the format the
//! Linux kernel unpacks as an initramfs.
//!
//! Every entry is a 110-byte ASCII header (the magic and 13 fields of 8 upper-case hex
//! digits), the NUL-terminated path name padded with NULs to a multiple of 4 bytes
//! (counting from the start of the header), then the data padded to a multiple of 4 bytes.
//! The archive ends with an entry named `TRAILER!!!`.
//!
//! Paths are stored without a leading `/`. The kernel does not create missing parent
//! directories, so [`CpioWriter`] emits every ancestor directory (mode 0755) before an
//! entry that needs it, unless it was added explicitly first. Timestamps and owners are 0,
//! so the same input gives the same bytes.

use std::collections::BTreeSet;
use std::io::{self, Write};

/// The magic of the "newc" format (no checksum).
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Size of a "newc" header in bytes.
pub const HEADER_LEN: usize = 110;
/// Name of the last entry of every archive.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;
/// Block device.
pub const S_IFBLK: u32 = 0o060_000;

/// Streams a "newc" cpio archive into `W`.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
    dirs: BTreeSet<String>,
}

/// The metadata of one entry.
struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    rdev_major: u32,
    rdev_minor: u32,
    data: &'a [u8],
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            written: 0,
            dirs: BTreeSet::new(),
        }
    }

    /// Adds a directory (`mode` holds the permission bits, e.g. `0o755`).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let name = normalize(path)?;
        if self.dirs.contains(&name) {
            return Ok(());
        }
        self.parents(&name)?;
        self.entry(&Header {
            name: &name,
            mode: S_IFDIR | (mode & 0o7777),
            nlink: 2,
            rdev_major: 0,
            rdev_minor: 0,
            data: &[],
        })?;
        self.dirs.insert(name);
        Ok(())
    }

    /// Adds a regular file with `data` as its contents.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let name = normalize(path)?;
        self.parents(&name)?;
        self.entry(&Header {
            name: &name,
            mode: S_IFREG | (mode & 0o7777),
            nlink: 1,
            rdev_major: 0,
            rdev_minor: 0,
            data,
        })
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let name = normalize(path)?;
        self.parents(&name)?;
        self.entry(&Header {
            name: &name,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            rdev_major: 0,
            rdev_minor: 0,
            data: target.as_bytes(),
        })
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.node(path, S_IFCHR | (mode & 0o7777), major, minor)
    }

    /// Adds a block device node.
    pub fn block_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.node(path, S_IFBLK | (mode & 0o7777), major, minor)
    }

    /// How many bytes were written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Writes the trailer and returns the inner writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(&Header {
            name: TRAILER,
            mode: 0,
            nlink: 1,
            rdev_major: 0,
            rdev_minor: 0,
            data: &[],
        })?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn node(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        let name = normalize(path)?;
        self.parents(&name)?;
        self.entry(&Header {
            name: &name,
            mode,
            nlink: 1,
            rdev_major: major,
            rdev_minor: minor,
            data: &[],
        })
    }

    /// Emits the ancestors of `name` that were not added yet, outermost first.
    fn parents(&mut self, name: &str) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut cur = name;
        while let Some(pos) = cur.rfind('/') {
            cur = &cur[..pos];
            if self.dirs.contains(cur) {
                break;
            }
            missing.push(cur.to_owned());
        }
        for dir in missing.into_iter().rev() {
            self.entry(&Header {
                name: &dir,
                mode: S_IFDIR | 0o755,
                nlink: 2,
                rdev_major: 0,
                rdev_minor: 0,
                data: &[],
            })?;
            self.dirs.insert(dir);
        }
        Ok(())
    }

    fn entry(&mut self, h: &Header<'_>) -> io::Result<()> {
        let filesize = u32::try_from(h.data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB"))?;
        let namesize = u32::try_from(h.name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio name too long"))?;
        // The trailer conventionally has inode 0.
        let ino = if h.name == TRAILER {
            0
        } else {
            let ino = self.next_ino;
            self.next_ino += 1;
            ino
        };
        let fields: [u32; 13] = [
            ino,
            h.mode,
            0, // uid
            0, // gid
            h.nlink,
            0, // mtime
            filesize,
            0, // devmajor
            0, // devminor
            h.rdev_major,
            h.rdev_minor,
            namesize,
            0, // check
        ];
        let mut header = Vec::with_capacity(HEADER_LEN + h.name.len() + 4);
        header.extend_from_slice(NEWC_MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        header.extend_from_slice(h.name.as_bytes());
        header.push(0);
        header.resize(pad4(header.len()), 0);
        self.write(&header)?;
        self.write(h.data)?;
        let pad = pad4(h.data.len()) - h.data.len();
        self.write(&[0u8; 3][..pad])?;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Rounds `n` up to a multiple of 4.
fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Strips the leading `/` (and `./`) and rejects empty names, `.`/`..` components and NULs.
fn normalize(path: &str) -> io::Result<String> {
    let trimmed = path.trim_start_matches("./").trim_start_matches('/');
    let trimmed = trimmed.trim_end_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.contains('\0')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid cpio path {path:?}"),
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry.
    #[derive(Debug)]
    struct Parsed {
        offset: usize,
        fields: [u32; 13],
        name: String,
        data: Vec<u8>,
    }

    /// A strict reader of the format, written independently of the writer.
    fn parse(bytes: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            assert_eq!(pos % 4, 0, "entry not 4-byte aligned");
            assert_eq!(&bytes[pos..pos + 6], b"070701");
            let mut fields = [0u32; 13];
            for (i, f) in fields.iter_mut().enumerate() {
                let start = pos + 6 + i * 8;
                let s = std::str::from_utf8(&bytes[start..start + 8]).expect("ascii");
                assert!(s
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
                *f = u32::from_str_radix(s, 16).expect("hex");
            }
            let namesize = fields[11] as usize;
            let name_start = pos + HEADER_LEN;
            let name = &bytes[name_start..name_start + namesize];
            assert_eq!(name.last(), Some(&0), "name not NUL-terminated");
            let name = String::from_utf8(name[..namesize - 1].to_vec()).expect("utf8");
            let data_start = pad4(name_start + namesize);
            // The name padding is NULs.
            assert!(bytes[name_start + namesize..data_start]
                .iter()
                .all(|b| *b == 0));
            let size = fields[6] as usize;
            let data = bytes[data_start..data_start + size].to_vec();
            let next = pad4(data_start + size);
            assert!(bytes[data_start + size..next].iter().all(|b| *b == 0));
            let done = name == TRAILER;
            out.push(Parsed {
                offset: pos,
                fields,
                name,
                data,
            });
            pos = next;
            if done {
                assert_eq!(pos, bytes.len(), "bytes after the trailer");
                return out;
            }
        }
    }

    fn archive(build: impl FnOnce(&mut CpioWriter<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        build(&mut w).expect("build");
        w.finish().expect("finish")
    }

    #[test]
    fn empty_archive_is_just_the_trailer() {
        let bytes = archive(|_| Ok(()));
        // 110 + "TRAILER!!!\0" (11) = 121 -> padded to 124.
        assert_eq!(bytes.len(), 124);
        let expected_header = concat!(
            "070701", "00000000", // ino
            "00000000", // mode
            "00000000", // uid
            "00000000", // gid
            "00000001", // nlink
            "00000000", // mtime
            "00000000", // filesize
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "0000000B", // namesize
            "00000000", // check
        );
        assert_eq!(&bytes[..HEADER_LEN], expected_header.as_bytes());
        assert_eq!(&bytes[HEADER_LEN..], b"TRAILER!!!\0\0\0\0");
    }

    #[test]
    fn file_header_fields_and_padding() {
        let bytes = archive(|w| w.file("/init", 0o755, b"#!/bin/sh\n"));
        let entries = parse(&bytes);
        assert_eq!(entries.len(), 2);
        let e = &entries[0];
        assert_eq!(e.offset, 0);
        assert_eq!(e.name, "init");
        assert_eq!(e.fields[0], 1, "ino");
        assert_eq!(e.fields[1], S_IFREG | 0o755, "mode");
        assert_eq!(e.fields[4], 1, "nlink");
        assert_eq!(e.fields[6], 10, "filesize");
        assert_eq!(e.fields[11], 5, "namesize includes the NUL");
        assert_eq!(e.data, b"#!/bin/sh\n");
        // Header 110 + name 5 = 115 -> data at 116; 10 bytes -> next entry at 128.
        assert_eq!(&bytes[115], &0);
        assert_eq!(&bytes[116..126], b"#!/bin/sh\n");
        assert_eq!(&bytes[126..128], &[0, 0]);
        assert_eq!(entries[1].offset, 128);
        assert_eq!(entries[1].name, TRAILER);
        // Exact mode field text: regular file 0755 = 0o100755 = 0x81ED.
        assert_eq!(&bytes[14..22], b"000081ED");
    }

    #[test]
    fn every_name_and_data_length_pads_to_four() {
        for name_len in 1..9 {
            for data_len in 0..9 {
                let name = "n".repeat(name_len);
                let data = vec![0xAA; data_len];
                let bytes = archive(|w| w.file(&name, 0o644, &data));
                let entries = parse(&bytes);
                assert_eq!(entries[0].name, name);
                assert_eq!(entries[0].data, data);
                assert_eq!(entries[1].offset % 4, 0);
                assert_eq!(bytes.len() % 4, 0);
            }
        }
    }

    #[test]
    fn device_nodes_carry_rdev() {
        let bytes = archive(|w| {
            w.char_dev("/dev/console", 0o600, 5, 1)?;
            w.char_dev("/dev/ttyS0", 0o660, 4, 64)?;
            w.block_dev("/dev/vda", 0o660, 254, 0)
        });
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["dev", "dev/console", "dev/ttyS0", "dev/vda", TRAILER]
        );
        let console = &entries[1];
        assert_eq!(console.fields[1], S_IFCHR | 0o600);
        assert_eq!(console.fields[1], 0o020_600);
        assert_eq!((console.fields[9], console.fields[10]), (5, 1));
        assert_eq!(
            (console.fields[7], console.fields[8]),
            (0, 0),
            "devmajor/minor"
        );
        assert_eq!(console.fields[6], 0, "no data");
        let tty = &entries[2];
        assert_eq!((tty.fields[9], tty.fields[10]), (4, 64));
        assert_eq!(entries[3].fields[1], S_IFBLK | 0o660);
    }

    #[test]
    fn parents_are_created_once_before_children() {
        let bytes = archive(|w| {
            w.dir("/etc", 0o700)?;
            w.file("/lib/modules/virtio.ko", 0o644, b"x")?;
            w.file("/lib/modules/virtio_ring.ko", 0o644, b"y")?;
            w.dir("/lib", 0o755)?; // already emitted: no duplicate
            w.symlink("/bin/sh", "busybox")
        });
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc",
                "lib",
                "lib/modules",
                "lib/modules/virtio.ko",
                "lib/modules/virtio_ring.ko",
                "bin",
                "bin/sh",
                TRAILER
            ]
        );
        assert_eq!(entries[0].fields[1], S_IFDIR | 0o700);
        assert_eq!(entries[1].fields[1], S_IFDIR | 0o755);
        assert_eq!(entries[1].fields[4], 2, "directories have nlink 2");
        let link = &entries[6];
        assert_eq!(link.fields[1], S_IFLNK | 0o777);
        assert_eq!(link.data, b"busybox");
        // Inodes are unique (except the trailer's 0).
        let mut inos: Vec<_> = entries[..entries.len() - 1]
            .iter()
            .map(|e| e.fields[0])
            .collect();
        inos.sort_unstable();
        inos.dedup();
        assert_eq!(inos.len(), entries.len() - 1);
        assert_eq!(entries.last().map(|e| e.fields[0]), Some(0));
    }

    #[test]
    fn rejects_bad_paths() {
        let mut w = CpioWriter::new(Vec::new());
        for bad in ["", "/", "a/../b", "./", "a//b", "nul\0"] {
            assert!(w.file(bad, 0o644, b"").is_err(), "{bad:?} accepted");
        }
        assert!(w.file("./ok", 0o644, b"").is_ok());
    }

    #[test]
    fn output_is_deterministic() {
        let make = || {
            archive(|w| {
                w.dir("/proc", 0o755)?;
                w.file("/init", 0o755, b"echo\n")
            })
        };
        assert_eq!(make(), make());
    }

    /// Cross-check with GNU cpio when it is installed (it is not required).
    #[test]
    fn gnu_cpio_lists_the_archive_when_available() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            return;
        };
        let bytes = archive(|w| {
            w.file("/init", 0o755, b"hi\n")?;
            w.char_dev("/dev/console", 0o600, 5, 1)
        });
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&bytes).expect("write");
        }
        let out = child.wait_with_output().expect("cpio");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("init"), "{listing}");
        assert!(listing.contains("dev/console"), "{listing}");
        assert!(listing.contains("5,"), "{listing}");
    }
}
