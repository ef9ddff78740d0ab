//! Cutting streamed LLM text into speakable pieces, so the first sentence can be synthesised and
//! played while the rest of the reply is still being generated. Pure.

/// A piece longer than this is cut at the last space even without a sentence end, so a long
/// run-on reply does not delay the first audio.
const MAX_PIECE_CHARS: usize = 220;

/// Take every complete sentence off the front of `pending` and return them trimmed. With `flush`
/// the remainder is returned too (the reply is complete).
pub fn split_speakable(pending: &mut String, flush: bool) -> Vec<String> {
    let mut pieces = Vec::new();
    while let Some(end) = sentence_end(pending) {
        let rest = pending.split_off(end);
        let piece = std::mem::replace(pending, rest);
        push_trimmed(&mut pieces, &piece);
    }
    if pending.chars().count() > MAX_PIECE_CHARS
        && let Some(space) = pending.rfind(char::is_whitespace)
    {
        let rest = pending.split_off(space);
        let piece = std::mem::replace(pending, rest);
        push_trimmed(&mut pieces, &piece);
    }
    if flush {
        let piece = std::mem::take(pending);
        push_trimmed(&mut pieces, &piece);
    }
    pieces
}

fn push_trimmed(pieces: &mut Vec<String>, piece: &str) {
    let piece = piece.trim();
    if !piece.is_empty() {
        pieces.push(piece.to_owned());
    }
}

/// Byte index just after the first sentence end that is followed by whitespace (so "3.5" and
/// "e.g." inside a word are not cut), or after a CJK full stop, which needs no space.
fn sentence_end(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '。' | '！' | '？' => return Some(i + c.len_utf8()),
            '.' | '!' | '?' | ';' | '\n' => {
                if let Some(&(_, next)) = chars.peek()
                    && next.is_whitespace()
                {
                    return Some(i + c.len_utf8());
                }
                if c == '\n' {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}
