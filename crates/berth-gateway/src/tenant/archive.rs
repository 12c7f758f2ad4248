//! What names images inside a tenant's uploads: the `manifest.json`, `repositories` and
//! `index.json` of an image archive (`docker load`) and the Dockerfile of a build
//! context. berth rewrites those files in the tar as it passes, so the names the engine
//! reads are the tenant's engine names; anything berth cannot read the way dockerd
//! does (a compressed tar, a link where one of those files should be, a pax `size`, a
//! parser directive or variable in an image name) is refused.

use serde_json::Value;

/// Rewrites the regular files of the uncompressed tar `tar` whose cleaned names are in
/// `names`, with `rewrite(name, content)`; every other byte is kept.
pub(crate) fn edit_tar(
    tar: &[u8],
    names: &[&str],
    mut rewrite: impl FnMut(&str, &[u8]) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(tar.len() + 1024);
    let mut pos = 0;
    // A name (GNU `L` entry, pax `path`) for the next entry.
    let mut next_name: Option<String> = None;
    while pos + 512 <= tar.len() {
        let header = &tar[pos..pos + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        if !checksum_ok(header) {
            return Err("the body is not an uncompressed tar archive".into());
        }
        let size = entry_size(header)?;
        let data_start = pos + 512;
        let data_end = data_start
            .checked_add(size)
            .filter(|end| *end <= tar.len())
            .ok_or("a tar entry runs past the end of the body")?;
        let next = (data_start + size.div_ceil(512) * 512).min(tar.len());
        let data = &tar[data_start..data_end];
        let kind = header[156];
        match kind {
            b'L' => next_name = Some(c_string(data)),
            b'x' => {
                if let Some(path) = pax_path(data)? {
                    next_name = Some(path);
                }
            }
            b'K' | b'g' => {}
            _ => {
                let name = next_name.take().unwrap_or_else(|| ustar_name(header));
                let cleaned = clean(&name);
                let regular = matches!(kind, b'0' | 0 | b'7');
                let picked = names.contains(&cleaned.as_str());
                let leads_to_one = names.iter().any(|n| {
                    n.strip_prefix(cleaned.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                });
                if (picked && !regular) || (leads_to_one && matches!(kind, b'1' | b'2')) {
                    return Err(format!("{name} in the archive must be a regular file"));
                }
                if picked {
                    let new = rewrite(&cleaned, data)?;
                    let mut h = header.to_vec();
                    h[124..136].copy_from_slice(format!("{:011o}\0", new.len()).as_bytes());
                    set_checksum(&mut h);
                    out.extend_from_slice(&h);
                    out.extend_from_slice(&new);
                    out.resize(out.len() + new.len().div_ceil(512) * 512 - new.len(), 0);
                    pos = next;
                    continue;
                }
            }
        }
        out.extend_from_slice(&tar[pos..next]);
        pos = next;
    }
    out.extend_from_slice(&tar[pos..]);
    Ok(out)
}

fn checksum_ok(h: &[u8]) -> bool {
    let Some(want) = octal(&h[148..156]) else {
        return false;
    };
    let field = |i: usize| if (148..156).contains(&i) { b' ' } else { h[i] };
    let unsigned: u64 = (0..512).map(|i| u64::from(field(i))).sum();
    let signed: i64 = (0..512).map(|i| i64::from(field(i) as i8)).sum();
    want == unsigned || i64::try_from(want).is_ok_and(|w| w == signed)
}

fn set_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The entry's size: octal, or GNU base-256 (high bit set).
fn entry_size(h: &[u8]) -> Result<usize, String> {
    let field = &h[124..136];
    let size = if field[0] & 0x80 != 0 {
        field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x7f), |acc, b| {
                acc.checked_mul(256).map(|a| a + u64::from(*b))
            })
    } else {
        octal(field)
    };
    size.and_then(|s| usize::try_from(s).ok())
        .ok_or_else(|| "a tar entry with an unreadable size".to_owned())
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The entry's name as Go's `archive/tar` reads it: the prefix field only in the POSIX
/// formats (USTAR/PAX: 155 bytes; STAR: 131), never in GNU or V7 headers, whose bytes
/// there mean something else.
fn ustar_name(h: &[u8]) -> String {
    let name = c_string(&h[0..100]);
    let posix = &h[257..263] == b"ustar\0";
    let prefix = match (posix, &h[508..512] == b"tar\0") {
        (true, true) => c_string(&h[345..476]),
        (true, false) => c_string(&h[345..500]),
        _ => String::new(),
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// The `path` of a pax header; a pax `size` is refused (Go reads the data by it).
fn pax_path(data: &[u8]) -> Result<Option<String>, String> {
    let mut path = None;
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a bad pax record")?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > space && *n <= rest.len())
            .ok_or("a bad pax record")?;
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            match &record[..eq] {
                b"path" => path = Some(String::from_utf8_lossy(&record[eq + 1..]).into_owned()),
                b"size" => return Err("pax size records are not read by berth".into()),
                // Go names a sparse file by `GNU.sparse.name`.
                key if key.starts_with(b"GNU.sparse") => {
                    return Err("GNU sparse pax records are not read by berth".into())
                }
                _ => {}
            }
        }
        rest = &rest[len..];
    }
    Ok(path)
}

/// `./a/../b/Dockerfile` → `b/Dockerfile`: where the entry lands when extracted.
pub(crate) fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// An image archive's files with every image name mapped by `map` (`None`: refused).
pub(crate) fn rename_in_archive(
    name: &str,
    content: &[u8],
    map: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<u8>, String> {
    let mut doc: Value =
        serde_json::from_slice(content).map_err(|e| format!("{name} in the archive: {e}"))?;
    let mapped = |r: &str| map(r).ok_or_else(|| format!("image name {r:?} in {name}"));
    match name {
        "manifest.json" => {
            for entry in doc.as_array_mut().into_iter().flatten() {
                for tag in field_mut(entry, "RepoTags")?
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Value::String(t) = tag {
                        *t = mapped(t)?;
                    }
                }
            }
        }
        "repositories" => {
            if let Value::Object(repos) = &mut doc {
                let taken = std::mem::take(repos);
                for (repo, tags) in taken {
                    repos.insert(mapped(&repo)?, tags);
                }
            }
        }
        _ => {
            let manifests = field_mut(&mut doc, "manifests")?.and_then(Value::as_array_mut);
            for m in manifests.into_iter().flatten() {
                let annotations = field_mut(m, "annotations")?.and_then(Value::as_object_mut);
                for (key, value) in annotations.into_iter().flatten() {
                    if key == "io.containerd.image.name" {
                        if let Value::String(v) = value {
                            *v = mapped(v)?;
                        }
                    }
                }
            }
        }
    }
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

/// Member `field` of an object as Go's decoder finds it: another spelling Go would
/// also take (case, `ſ`, Kelvin sign, dotless i) is refused.
fn field_mut<'v>(v: &'v mut Value, field: &str) -> Result<Option<&'v mut Value>, String> {
    let Value::Object(map) = v else {
        return Ok(None);
    };
    let fold = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                'ſ' => 's',
                '\u{212a}' => 'k',
                'İ' | 'ı' => 'i',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    };
    if map.keys().any(|k| k != field && fold(k) == fold(field)) {
        return Err(format!("{field} spelt another way"));
    }
    Ok(map.get_mut(field))
}

/// A Dockerfile with every image it names (`FROM`, `COPY --from`, not its own stages
/// or `scratch`) replaced by `map(image)` (`None`: kept). Names berth cannot read as the
/// builder does (a variable, an `escape` directive, `ONBUILD` naming an image) are
/// refused.
pub(crate) fn rewrite_dockerfile(
    text: &str,
    map: &mut dyn FnMut(&str) -> Result<Option<String>, String>,
) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut stages: Vec<String> = Vec::new();
    let mut directives = true;
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if directives {
            if let Some((key, _)) = trimmed.strip_prefix('#').and_then(|d| d.split_once('=')) {
                if key.trim().eq_ignore_ascii_case("escape") {
                    return Err("an escape directive in a tenant's Dockerfile".into());
                }
                out.push_str(lines[i]);
                i += 1;
                continue;
            }
            directives = false;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            out.push_str(lines[i]);
            i += 1;
            continue;
        }
        let start = i;
        let mut logical = String::new();
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            if !logical.is_empty() && line.trim_start().starts_with('#') {
                continue;
            }
            match line.trim_end().strip_suffix('\\') {
                Some(part) => {
                    logical.push_str(part);
                    logical.push(' ');
                }
                None => {
                    logical.push_str(line.trim_end());
                    break;
                }
            }
        }
        match instruction(&logical, &mut stages, map)? {
            Some(new) => {
                out.push_str(&new);
                out.push('\n');
            }
            None => lines[start..i].iter().for_each(|l| out.push_str(l)),
        }
    }
    Ok(out)
}

/// Byte ranges of the words of `line`.
fn words(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

fn instruction(
    line: &str,
    stages: &mut Vec<String>,
    map: &mut dyn FnMut(&str) -> Result<Option<String>, String>,
) -> Result<Option<String>, String> {
    let spans = words(line);
    let word = |n: usize| spans.get(n).map(|(s, e)| &line[*s..*e]);
    let Some(keyword) = word(0).map(str::to_ascii_lowercase) else {
        return Ok(None);
    };
    let mut resolve = |image: &str, stages: &[String]| -> Result<Option<String>, String> {
        if image.contains('$') {
            return Err(format!("a variable in the image name {image:?}"));
        }
        let lower = image.to_ascii_lowercase();
        if lower == "scratch" || stages.contains(&lower) {
            return Ok(None);
        }
        map(image)
    };
    // (span, replacement)
    let mut edits: Vec<((usize, usize), String)> = Vec::new();
    match keyword.as_str() {
        "from" => {
            let mut n = 1;
            while word(n).is_some_and(|w| w.starts_with("--")) {
                n += 1;
            }
            let Some(image) = word(n) else {
                return Ok(None);
            };
            if let Some(new) = resolve(image, stages)? {
                edits.push((spans[n], new));
            }
            if word(n + 1).is_some_and(|w| w.eq_ignore_ascii_case("as")) {
                if let Some(stage) = word(n + 2) {
                    stages.push(stage.to_ascii_lowercase());
                }
            }
        }
        "copy" => {
            let mut n = 1;
            while let Some(w) = word(n).filter(|w| w.starts_with("--")) {
                if let Some(from) = w.strip_prefix("--from=") {
                    let index = !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit());
                    if !index {
                        if let Some(new) = resolve(from, stages)? {
                            let (s, e) = spans[n];
                            edits.push(((s + "--from=".len(), e), new));
                        }
                    }
                }
                n += 1;
            }
        }
        "onbuild" => {
            let named = word(1).is_some_and(|w| w.eq_ignore_ascii_case("from"))
                || line.to_ascii_lowercase().contains("--from");
            if named {
                return Err("ONBUILD naming an image in a tenant's Dockerfile".into());
            }
        }
        _ => {}
    }
    if edits.is_empty() {
        return Ok(None);
    }
    let mut out = line.to_owned();
    for ((s, e), new) in edits.into_iter().rev() {
        out.replace_range(s..e, &new);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: u8, data: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        set_checksum(&mut h);
        let mut out = h;
        out.extend_from_slice(data);
        out.resize(out.len() + data.len().div_ceil(512) * 512 - data.len(), 0);
        out
    }

    #[test]
    fn named_files_are_rewritten_and_the_rest_kept() {
        let mut tar = entry("layer/x", b'0', b"abc");
        tar.extend(entry(
            "./manifest.json",
            b'0',
            br#"[{"RepoTags":["app:1"]}]"#,
        ));
        tar.extend(vec![0; 1024]);
        let map = |r: &str| Some(format!("ns/{r}"));
        let out = edit_tar(&tar, &["manifest.json"], |n, c| {
            rename_in_archive(n, c, &map)
        })
        .unwrap();
        let again = edit_tar(&out, &["manifest.json"], |_, c| {
            assert_eq!(c, br#"[{"RepoTags":["ns/app:1"]}]"#);
            Ok(c.to_vec())
        })
        .unwrap();
        assert_eq!(again, out);
        assert_eq!(&out[..512 + 512], &tar[..1024]);
        // A link where the manifest should be, another spelling, a compressed body.
        let link = entry("manifest.json", b'2', b"");
        assert!(edit_tar(&link, &["manifest.json"], |_, c| Ok(c.to_vec())).is_err());
        let folded = entry("manifest.json", b'0', br#"[{"repoTags":["x"]}]"#);
        assert!(
            edit_tar(&folded, &["manifest.json"], |n, c| rename_in_archive(
                n, c, &map
            ))
            .is_err()
        );
        assert!(edit_tar(b"\x1f\x8b\x08\0not a tar at all, padded out to one block and more than that: ................................................................................................................................................................................................................................................................................................................................................................................................................................................................", &["manifest.json"], |_, c| Ok(c.to_vec())).is_err());
        // A GNU header's bytes where USTAR has its prefix are not a prefix.
        let mut gnu = entry("manifest.json", b'0', br#"[{"RepoTags":["g"]}]"#);
        gnu[257..265].copy_from_slice(b"ustar  \0");
        gnu[345..350].copy_from_slice(b"12345");
        set_checksum(&mut gnu[..512]);
        let out = edit_tar(&gnu, &["manifest.json"], |n, c| {
            rename_in_archive(n, c, &map)
        })
        .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("ns/g"));
        let sparse = entry("x", b'x', b"30 GNU.sparse.name=manifest\n");
        assert!(edit_tar(&sparse, &["manifest.json"], |_, c| Ok(c.to_vec())).is_err());
        // A pax path names the entry.
        let mut pax = entry("PaxHeaders/x", b'x', b"22 path=manifest.json\n");
        pax.extend(entry("innocent", b'0', br#"[{"RepoTags":["a"]}]"#));
        let out = edit_tar(&pax, &["manifest.json"], |n, c| {
            rename_in_archive(n, c, &map)
        })
        .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("ns/a"));
    }

    #[test]
    fn dockerfile_images_but_stages_and_scratch_are_mapped() {
        let text = "# syntax=x\nFROM --platform=linux/amd64 base AS build\nRUN true\nFROM scratch\nCOPY --from=build /a /a\nCOPY --chown=1 \\\n  --from=other /b /b\nFROM Build\nCOPY --from=0 /c /c\n";
        let mut map = |r: &str| Ok(Some(format!("ns/{r}")));
        let out = rewrite_dockerfile(text, &mut map).unwrap();
        assert_eq!(out, "# syntax=x\nFROM --platform=linux/amd64 ns/base AS build\nRUN true\nFROM scratch\nCOPY --from=build /a /a\nCOPY --chown=1    --from=ns/other /b /b\nFROM Build\nCOPY --from=0 /c /c\n");
        for bad in [
            "# escape=`\nFROM a\n",
            "ARG X=a\nFROM $X\n",
            "FROM a\nONBUILD COPY --from=b / /\n",
        ] {
            assert!(rewrite_dockerfile(bad, &mut map).is_err(), "{bad}");
        }
    }
}
