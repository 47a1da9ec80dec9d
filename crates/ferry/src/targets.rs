//! Turning command-line sources and destinations into `FileSpec`s: URL parsing, naming files
//! after a URL's last segment, making local paths absolute, and reading list files.
//!
//! Everything here is pure (the current directory and "is this a directory?" are passed in), so
//! the rules are unit-tested without a file system.

use std::path::{Component, Path, PathBuf};

use ferry_proto::FileSpec;
use url::Url;

use crate::usage::UsageError;

/// URL schemes the daemon accepts (docs/protocol.md: `http`, `https` or `file`).
const SCHEMES: [&str; 3] = ["http", "https", "file"];

/// Makes `path` absolute against `cwd`, dropping `.` components (the daemon requires absolute
/// paths and reports them back verbatim, so `./x` would look odd).
pub fn absolutize(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    joined
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Parses a source given on the command line: an `http`, `https` or `file` URL, or a local
/// path (absolute, or relative to `cwd` when `exists` says it is there), which becomes a
/// `file://` URL.
pub fn parse_source(
    arg: &str,
    cwd: &Path,
    exists: impl Fn(&Path) -> bool,
) -> Result<Url, UsageError> {
    match Url::parse(arg) {
        Ok(url) if SCHEMES.contains(&url.scheme()) => Ok(url),
        Ok(url) => Err(UsageError::new(format!(
            "unsupported URL scheme `{}` in `{arg}`: use http, https or file",
            url.scheme()
        ))),
        Err(_) => {
            let path = Path::new(arg);
            // A relative argument that is not a file here is far more likely a URL missing its
            // scheme (`example.com/x`) than a file meant to be created, so refuse it.
            if !path.is_absolute() && !exists(&absolutize(path, cwd)) {
                return Err(UsageError::new(format!(
                    "`{arg}` is neither a URL (http, https or file) nor an existing local file"
                )));
            }
            Url::from_file_path(absolutize(path, cwd))
                .map_err(|()| UsageError::new(format!("cannot turn `{arg}` into a file:// URL")))
        }
    }
}

/// The file name a URL's content is saved under: its path's last segment, percent-decoded.
pub fn last_segment(url: &Url) -> Result<String, UsageError> {
    let unusable = || {
        UsageError::new(format!(
            "cannot name a file after {url}: its path has no usable last segment; give a file path as the destination"
        ))
    };
    let raw = url
        .path_segments()
        .and_then(|mut segments| segments.next_back())
        .ok_or_else(unusable)?;
    let name = percent_decode(raw);
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(unusable());
    }
    Ok(name)
}

/// Decodes `%XX` escapes; keeps the text as it is when the result is not UTF-8.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            // Two hex digits always fit a byte.
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// Where one URL's content goes when the user named `dest`: inside it when it is an existing
/// directory (or ends with `/`), else `dest` itself.
pub fn target_for(
    url: &Url,
    dest: &str,
    cwd: &Path,
    is_dir: impl Fn(&Path) -> bool,
) -> Result<PathBuf, UsageError> {
    let abs = absolutize(Path::new(dest), cwd);
    if is_dir(&abs) {
        return Ok(abs.join(last_segment(url)?));
    }
    if dest.ends_with('/') {
        return Err(UsageError::new(format!(
            "destination directory {} does not exist",
            abs.display()
        )));
    }
    Ok(abs)
}

/// The destinations of `ferry transfer URL… DEST`: for one URL, [`target_for`]; for several,
/// DEST must be an existing directory and each file is named after its URL's last segment.
pub fn resolve_dest(
    urls: &[Url],
    dest: &str,
    cwd: &Path,
    is_dir: impl Fn(&Path) -> bool,
) -> Result<Vec<PathBuf>, UsageError> {
    match urls {
        [] => Err(UsageError::new("no URL given")),
        [url] => Ok(vec![target_for(url, dest, cwd, is_dir)?]),
        _ => {
            let dir = absolutize(Path::new(dest), cwd);
            if !is_dir(&dir) {
                return Err(UsageError::new(format!(
                    "with several URLs the destination must be an existing directory, and {} is not",
                    dir.display()
                )));
            }
            urls.iter()
                .map(|u| Ok(dir.join(last_segment(u)?)))
                .collect()
        }
    }
}

/// Whether a command-line argument is a URL Ferry can fetch (not a local path).
pub fn is_url(arg: &str) -> bool {
    Url::parse(arg).is_ok_and(|u| SCHEMES.contains(&u.scheme()))
}

/// Splits `ferry transfer`'s positional arguments into sources and the destination: with
/// `-o NAME`, every argument is a source (exactly one) saved as NAME; a single argument, or a
/// last argument that is a URL, means the current directory; else the last one is DEST.
pub fn split_transfer_args<'a>(
    args: &'a [String],
    output: Option<&'a str>,
) -> Result<(&'a [String], &'a str), UsageError> {
    match (args, output) {
        ([], _) => Err(UsageError::new("give one or more URLs")),
        ([_], Some(name)) => Ok((args, name)),
        (_, Some(_)) => Err(UsageError::new(
            "-o NAME names one file: give exactly one URL with it",
        )),
        ([_], None) => Ok((args, ".")),
        ([.., last], None) if is_url(last) => Ok((args, ".")),
        ([sources @ .., dest], None) => Ok((sources, dest)),
    }
}

/// One `URL PATH` line of a list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// 1-based line number, for error messages.
    pub line: usize,
    /// The URL (or local path) as written.
    pub source: String,
    /// The destination as written (may contain spaces).
    pub dest: String,
}

/// Parses a list file: one `URL PATH` per line; blank lines and lines starting with `#` are
/// skipped; PATH is the rest of the line, so it may contain spaces. `origin` names the file in
/// errors.
pub fn parse_list(text: &str, origin: &str) -> Result<Vec<ListEntry>, UsageError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (source, dest) = line
            .split_once(char::is_whitespace)
            .map(|(s, d)| (s, d.trim()))
            .filter(|(_, d)| !d.is_empty())
            .ok_or_else(|| {
                UsageError::new(format!(
                    "{origin}:{}: expected `URL PATH`, found `{line}`",
                    i + 1
                ))
            })?;
        entries.push(ListEntry {
            line: i + 1,
            source: source.to_owned(),
            dest: dest.to_owned(),
        });
    }
    if entries.is_empty() {
        return Err(UsageError::new(format!("{origin} lists no files")));
    }
    Ok(entries)
}

/// Builds the `FileSpec`s of a parsed list file; each PATH follows [`target_for`].
pub fn list_specs(
    entries: &[ListEntry],
    origin: &str,
    cwd: &Path,
    exists: impl Fn(&Path) -> bool,
    is_dir: impl Fn(&Path) -> bool,
) -> Result<Vec<FileSpec>, UsageError> {
    entries
        .iter()
        .map(|e| {
            let at = |err: UsageError| UsageError::new(format!("{origin}:{}: {err}", e.line));
            let url = parse_source(&e.source, cwd, &exists).map_err(at)?;
            let path = target_for(&url, &e.dest, cwd, &is_dir).map_err(at)?;
            spec(&url, &path, None).map_err(at)
        })
        .collect()
}

/// A `FileSpec` for `url` saved at `path` (which must be UTF-8: the wire carries strings).
pub fn spec(url: &Url, path: &Path, sha256: Option<String>) -> Result<FileSpec, UsageError> {
    let local_path = path
        .to_str()
        .ok_or_else(|| UsageError::new(format!("{} is not valid UTF-8", path.display())))?;
    Ok(FileSpec {
        remote_url: url.to_string(),
        local_path: local_path.to_owned(),
        sha256,
        ranges: None,
    })
}

/// Refuses two files that would be saved at the same path (the second would overwrite the
/// first when the job completes).
pub fn check_distinct(specs: &[FileSpec]) -> Result<(), UsageError> {
    for (i, a) in specs.iter().enumerate() {
        if let Some(b) = specs[..i].iter().find(|b| b.local_path == a.local_path) {
            return Err(UsageError::new(format!(
                "{} and {} would both be saved as {}",
                b.remote_url, a.remote_url, a.local_path
            )));
        }
    }
    Ok(())
}

/// Refuses a destination whose directory does not exist, with the message a trailing `/` gets
/// from [`target_for`], so the same mistake reads (and exits) the same either way.
pub fn check_parents(specs: &[FileSpec], is_dir: impl Fn(&Path) -> bool) -> Result<(), UsageError> {
    for s in specs {
        if let Some(parent) = Path::new(&s.local_path).parent()
            && !is_dir(parent)
        {
            return Err(UsageError::new(format!(
                "destination directory {} does not exist",
                parent.display()
            )));
        }
    }
    Ok(())
}

/// Refuses destinations that already exist (`exists` says which), so `ferry transfer` never
/// replaces a file silently; `--overwrite` skips this check.
pub fn check_not_clobbering(
    specs: &[FileSpec],
    exists: impl Fn(&Path) -> bool,
) -> Result<(), UsageError> {
    let taken: Vec<&str> = specs
        .iter()
        .map(|s| s.local_path.as_str())
        .filter(|p| exists(Path::new(p)))
        .collect();
    match taken.as_slice() {
        [] => Ok(()),
        [one] => Err(UsageError::new(format!(
            "{one} already exists; pass --overwrite to replace it, or choose another destination"
        ))),
        [first, rest @ ..] => Err(UsageError::new(format!(
            "{first} and {} more destination(s) already exist; pass --overwrite to replace them, or choose another destination",
            rest.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn dirs(list: &'static [&'static str]) -> impl Fn(&Path) -> bool {
        move |p: &Path| list.iter().any(|d| Path::new(d) == p)
    }

    #[test]
    fn absolutize_joins_and_drops_dots() {
        let cwd = Path::new("/home/u");
        assert_eq!(
            absolutize(Path::new("./a/./b"), cwd),
            PathBuf::from("/home/u/a/b")
        );
        assert_eq!(absolutize(Path::new("/x/y"), cwd), PathBuf::from("/x/y"));
        assert_eq!(absolutize(Path::new("."), cwd), PathBuf::from("/home/u"));
    }

    #[test]
    fn sources() {
        let cwd = Path::new("/w");
        let none = |_: &Path| false;
        assert_eq!(
            parse_source("https://h/a", cwd, none).unwrap().as_str(),
            "https://h/a"
        );
        assert_eq!(
            parse_source("/data/f.bin", cwd, none).unwrap().as_str(),
            "file:///data/f.bin"
        );
        assert_eq!(
            parse_source("rel/f", cwd, |p: &Path| p == Path::new("/w/rel/f"))
                .unwrap()
                .as_str(),
            "file:///w/rel/f"
        );
        let e = parse_source("example.com/f", cwd, none).unwrap_err();
        assert!(e.0.contains("example.com/f"), "{e}");
        let e = parse_source("ftp://h/f", cwd, none).unwrap_err();
        assert!(e.0.contains("`ftp`"), "{e}");
    }

    #[test]
    fn last_segments() {
        assert_eq!(last_segment(&url("https://h/a/b.iso")).unwrap(), "b.iso");
        assert_eq!(
            last_segment(&url("https://h/a/my%20file.txt?x=1")).unwrap(),
            "my file.txt"
        );
        assert_eq!(last_segment(&url("file:///srv/x")).unwrap(), "x");
        for bad in [
            "https://h/",
            "https://h",
            "https://h/dir/",
            "https://h/a/%2e%2e",
        ] {
            let e = last_segment(&url(bad)).unwrap_err();
            assert!(e.0.contains("no usable last segment"), "{bad}: {e}");
        }
        let e = last_segment(&url("https://h/a%2Fb")).unwrap_err();
        assert!(e.0.contains("https://h/a%2Fb"), "{e}");
    }

    #[test]
    fn percent_decoding_keeps_odd_input() {
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("%FF"), "%FF");
    }

    #[test]
    fn dest_for_one_url() {
        let cwd = Path::new("/w");
        let u = [url("https://h/a/f.bin")];
        // An existing directory: the file goes inside it.
        assert_eq!(
            resolve_dest(&u, "out", cwd, dirs(&["/w/out"])).unwrap(),
            vec![PathBuf::from("/w/out/f.bin")]
        );
        // Anything else is the file path itself.
        assert_eq!(
            resolve_dest(&u, "g.bin", cwd, dirs(&[])).unwrap(),
            vec![PathBuf::from("/w/g.bin")]
        );
        assert_eq!(
            resolve_dest(&u, "/abs/g", cwd, dirs(&["/w"])).unwrap(),
            vec![PathBuf::from("/abs/g")]
        );
        // A trailing slash promises a directory.
        let e = resolve_dest(&u, "missing/", cwd, dirs(&[])).unwrap_err();
        assert!(e.0.contains("/w/missing"), "{e}");
        // A URL without a name needs an explicit file path.
        let root = [url("https://h/")];
        assert!(resolve_dest(&root, ".", cwd, dirs(&["/w"])).is_err());
        assert_eq!(
            resolve_dest(&root, "index.html", cwd, dirs(&[])).unwrap(),
            vec![PathBuf::from("/w/index.html")]
        );
    }

    #[test]
    fn dest_for_several_urls() {
        let cwd = Path::new("/w");
        let u = [url("https://h/a"), url("file:///x/b")];
        assert_eq!(
            resolve_dest(&u, ".", cwd, dirs(&["/w"])).unwrap(),
            vec![PathBuf::from("/w/a"), PathBuf::from("/w/b")]
        );
        let e = resolve_dest(&u, "nope", cwd, dirs(&[])).unwrap_err();
        assert!(e.0.contains("existing directory"), "{e}");
        let e = resolve_dest(
            &[url("https://h/a"), url("https://h/")],
            ".",
            cwd,
            dirs(&["/w"]),
        )
        .unwrap_err();
        assert!(e.0.contains("https://h/"), "{e}");
    }

    #[test]
    fn list_files() {
        let text = "# mirrors\n\nhttps://h/a  /tmp/a\n  https://h/b my dir/b.bin  \n";
        let entries = parse_list(text, "list.txt").unwrap();
        assert_eq!(
            entries,
            vec![
                ListEntry {
                    line: 3,
                    source: "https://h/a".into(),
                    dest: "/tmp/a".into()
                },
                ListEntry {
                    line: 4,
                    source: "https://h/b".into(),
                    dest: "my dir/b.bin".into()
                },
            ]
        );
        let e = parse_list("https://h/a /x\n\nhttps://h/b\n", "l").unwrap_err();
        assert_eq!(e.0, "l:3: expected `URL PATH`, found `https://h/b`");
        assert!(parse_list("# only\n\n", "l").is_err());
    }

    #[test]
    fn list_specs_name_the_bad_line() {
        let entries = parse_list("https://h/a a\nftp://h/b b\n", "l").unwrap();
        let e = list_specs(&entries, "l", Path::new("/w"), |_| false, |_| false).unwrap_err();
        assert!(e.0.starts_with("l:2: "), "{e}");
        let entries = parse_list("https://h/a a\nhttps://h/b d\n", "l").unwrap();
        let specs = list_specs(
            &entries,
            "l",
            Path::new("/w"),
            |_| false,
            |p: &Path| p == Path::new("/w/d"),
        )
        .unwrap();
        assert_eq!(specs[0].local_path, "/w/a");
        assert_eq!(specs[1].local_path, "/w/d/b");
    }

    #[test]
    fn duplicates_are_refused() {
        let a = spec(&url("https://h/x/f"), Path::new("/d/f"), None).unwrap();
        let b = spec(&url("https://g/y/f"), Path::new("/d/f"), None).unwrap();
        let e = check_distinct(&[a.clone(), b]).unwrap_err();
        assert!(e.0.contains("/d/f"), "{e}");
        assert!(check_distinct(&[a]).is_ok());
    }

    #[test]
    fn missing_parent_directories_are_refused() {
        let a = spec(&url("https://h/a"), Path::new("/w/missing/a"), None).unwrap();
        let e = check_parents(std::slice::from_ref(&a), dirs(&["/w"])).unwrap_err();
        assert_eq!(e.0, "destination directory /w/missing does not exist");
        // The same words as a trailing slash gets.
        let t = target_for(
            &url("https://h/a"),
            "missing/",
            Path::new("/w"),
            dirs(&["/w"]),
        );
        assert_eq!(t.unwrap_err(), e);
        assert!(check_parents(&[a], dirs(&["/w/missing"])).is_ok());
    }

    #[test]
    fn existing_destinations_are_refused() {
        let a = spec(&url("https://h/a"), Path::new("/d/a"), None).unwrap();
        let b = spec(&url("https://h/b"), Path::new("/d/b"), None).unwrap();
        let only_a = |p: &Path| p == Path::new("/d/a");
        let e = check_not_clobbering(&[a.clone(), b.clone()], only_a).unwrap_err();
        assert!(
            e.0.starts_with("/d/a already exists") && e.0.contains("--overwrite"),
            "{e}"
        );
        let e = check_not_clobbering(&[a.clone(), b.clone()], |_| true).unwrap_err();
        assert!(e.0.contains("1 more"), "{e}");
        assert!(check_not_clobbering(&[a, b], |_| false).is_ok());
    }

    #[test]
    fn transfer_args_split() {
        let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let one = v(&["https://h/a"]);
        assert_eq!(split_transfer_args(&one, None).unwrap(), (&one[..], "."));
        let two = v(&["https://h/a", "https://h/b"]);
        assert_eq!(split_transfer_args(&two, None).unwrap(), (&two[..], "."));
        let to_dir = v(&["https://h/a", "https://h/b", "out"]);
        assert_eq!(
            split_transfer_args(&to_dir, None).unwrap(),
            (&to_dir[..2], "out")
        );
        let local = v(&["/data/f", "copy"]);
        assert_eq!(
            split_transfer_args(&local, None).unwrap(),
            (&local[..1], "copy")
        );
        assert_eq!(
            split_transfer_args(&one, Some("x.bin")).unwrap(),
            (&one[..], "x.bin")
        );
        assert!(split_transfer_args(&two, Some("x")).is_err());
        assert!(split_transfer_args(&[], None).is_err());
    }
}
