//! Reading a GGUF header that someone else wrote: the checks candle leaves out, made before it trusts a field.
//!
//! candle bounds string and array lengths by the file size, but divides by `general.alignment` unchecked
//! (0 panics), multiplies tensor dimensions unchecked (a wrapped product passes its size check and then
//! builds a tensor the data cannot fill) and views an empty tensor's dangling buffer as typed data. All
//! three are checked here, against the file's real size.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use super::{LocalError, Result};

/// The `general.architecture` of the GGUF file at `path` (what llama.cpp loads it as).
pub fn architecture(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| LocalError::Model(format!("{}: {e}", path.display())))?;
    read_content(&mut file, path)?
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .ok_or_else(|| LocalError::Model(format!("{}: no general.architecture", path.display())))
}

/// Reads the header and tensor table, refusing any field that would panic, wrap or claim more than the file.
pub fn read_content<R: Read + Seek>(reader: &mut R, path: &Path) -> Result<Content> {
    let bad = |what: String| LocalError::Model(format!("{}: not a GGUF file: {what}", path.display()));
    let io = |e: std::io::Error| bad(e.to_string());
    let start = reader.stream_position().map_err(io)?;
    let file_size = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    if let Some(a) = alignment(reader, file_size).map_err(io)?
        && (a == 0 || !a.is_power_of_two())
    {
        return Err(bad(format!("general.alignment is {a} (a power of two is needed)")));
    }
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    let ct = Content::read(reader).map_err(|e| bad(super::candle_text(&e)))?;
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let t = &ct.tensor_infos[name];
        let dims = t.shape.dims();
        let (block, size) = (t.ggml_dtype.block_size(), t.ggml_dtype.type_size());
        // An empty tensor is refused too: candle would view its dangling buffer as typed data (UB).
        let elems = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n > 0);
        let bytes = elems.filter(|n| n.is_multiple_of(block)).and_then(|n| (n / block).checked_mul(size));
        let end = bytes.and_then(|b| ct.tensor_data_offset.checked_add(t.offset)?.checked_add(b as u64));
        match end {
            Some(end) if end <= file_size => {}
            _ => {
                return Err(bad(format!(
                    "tensor `{name}` of shape {dims:?} ({:?}) at offset {} is empty or does not fit in the file's {file_size} bytes",
                    t.ggml_dtype, t.offset
                )));
            }
        }
    }
    Ok(ct)
}

/// The value of `general.alignment` if the metadata holds an integer one; `None` when it holds none or the
/// header is malformed (candle then says how).
fn alignment<R: Read + Seek>(r: &mut R, file_size: u64) -> std::io::Result<Option<u64>> {
    let pos = r.stream_position()?;
    // Buffered: a vocabulary is hundreds of thousands of small fields.
    let mut h = Walker { r: std::io::BufReader::new(r), pos, file_size, wide: true };
    if h.u32()? != u32::from_le_bytes(*b"GGUF") {
        return Ok(None);
    }
    let version = h.u32()?;
    if !(1..=3).contains(&version) {
        return Ok(None);
    }
    h.wide = version > 1;
    let (_tensors, kvs) = (h.len()?, h.len()?);
    let mut found = None;
    for _ in 0..kvs {
        let key_len = h.len()?;
        let is_alignment = key_len == 17 && h.bytes(17)? == b"general.alignment";
        if !is_alignment {
            h.skip(if key_len == 17 { 0 } else { key_len })?;
        }
        let kind = h.u32()?;
        let v = h.value(kind, 0)?;
        if is_alignment && let Some(v) = v {
            found = Some(v);
        }
    }
    Ok(found)
}

struct Walker<'a, R> {
    r: std::io::BufReader<&'a mut R>,
    pos: u64,
    file_size: u64,
    /// Lengths are u64 (GGUF v2+) rather than u32 (v1).
    wide: bool,
}

impl<R: Read + Seek> Walker<'_, R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<()> {
        self.r.read_exact(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> std::io::Result<u32> {
        let mut b = [0; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn len(&mut self) -> std::io::Result<u64> {
        if !self.wide {
            return self.u32().map(u64::from);
        }
        let mut b = [0; 8];
        self.read(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn bytes(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut b = vec![0; n];
        self.read(&mut b)?;
        Ok(b)
    }

    /// Skips `n` bytes, refusing to pass the end of the file (a length field may claim anything).
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        match self.pos.checked_add(n) {
            Some(to) if to <= self.file_size => {
                // Within the file, so the step fits an i64.
                self.r.seek_relative(n as i64)?;
                self.pos = to;
                Ok(())
            }
            _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    /// Skips one value of GGUF type `kind`; returns it when it is an integer.
    fn value(&mut self, kind: u32, depth: usize) -> std::io::Result<Option<u64>> {
        let invalid = || std::io::Error::from(std::io::ErrorKind::InvalidData);
        let fixed = |k: u32| match k {
            0 | 1 | 7 => Some(1),
            2 | 3 => Some(2),
            4..=6 => Some(4),
            10..=12 => Some(8),
            _ => None,
        };
        if let Some(n) = fixed(kind) {
            let mut b = [0u8; 8];
            self.read(&mut b[..n])?;
            let v = u64::from_le_bytes(b);
            // Signed types count only when not negative, as candle reads them.
            let negative = matches!(kind, 1 | 3 | 5 | 11) && b[n - 1] & 0x80 != 0;
            return Ok((matches!(kind, 0..=5 | 10 | 11) && !negative).then_some(v));
        }
        match kind {
            8 => {
                let n = self.len()?;
                self.skip(n)?;
            }
            9 if depth < 64 => {
                let inner = self.u32()?;
                let n = self.len()?;
                match fixed(inner) {
                    Some(size) => self.skip(n.checked_mul(size as u64).ok_or_else(invalid)?)?,
                    None => {
                        for _ in 0..n {
                            self.value(inner, depth + 1)?;
                        }
                    }
                }
            }
            _ => return Err(invalid()),
        }
        Ok(None)
    }
}

/// The file's own weight formats as the pane title names them: one type (`Q4_1`), or a mix such as a Q4_K_M
/// file's (`Q4_K+Q6_K`), the type holding most parameters first. Only matrices count: every quantization keeps
/// norms and other vectors in f32.
pub fn weight_format(ct: &Content) -> String {
    let mut params: Vec<(String, usize)> = Vec::new();
    for t in ct.tensor_infos.values().filter(|t| t.shape.rank() >= 2) {
        let name = super::linear::type_name(t.ggml_dtype);
        match params.iter_mut().find(|(n, _)| *n == name) {
            Some((_, p)) => *p += t.shape.elem_count(),
            None => params.push((name, t.shape.elem_count())),
        }
    }
    params.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if params.is_empty() { "?".into() } else { params.into_iter().map(|(n, _)| n).collect::<Vec<_>>().join("+") }
}
