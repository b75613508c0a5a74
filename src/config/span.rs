//! Where in the text an error is: line numbers and key paths from TOML spans.

use super::*;

/// 1-based line holding byte `offset` of `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

/// The key path (`peer[1].endpoint`) of the innermost key or value covering byte `offset`.
/// `None` when the text is not valid TOML or the offset is in no key or value.
pub(super) fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let table = DeTable::parse(text).ok()?;
    path_in_table(table.get_ref(), offset, "")
}

pub(super) fn path_in_table(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        // Children first: a table's own span covers only its header, but an inline table's
        // covers its children too, and the innermost match is the useful one.
        path_in_value(value, offset, &path).or_else(|| covers(&key.span(), offset).then_some(path))
    })
}

pub(super) fn path_in_value(
    value: &Spanned<DeValue<'_>>,
    offset: usize,
    path: &str,
) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(table) => path_in_table(table, offset, path),
        DeValue::Array(array) => array
            .iter()
            .enumerate()
            .find_map(|(i, element)| path_in_value(element, offset, &format!("{path}[{i}]"))),
        _ => None,
    };
    inner.or_else(|| covers(&value.span(), offset).then(|| path.to_owned()))
}

pub(super) fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}
