use super::*;

fn mask(s: &str) -> String {
    String::from_utf8(mask_phone_numbers(s.as_bytes()).into_owned()).unwrap()
}

#[test]
fn e164_numbers_are_masked_wherever_they_are() {
    assert_eq!(mask("from=+5517999991292 ok"), "from=+55179****92 ok");
    assert_eq!(mask("+5517999991292"), "+55179****92");
    assert_eq!(
        mask(r#"{"caller":"+14155550101","to":"+15557654321"}"#),
        r#"{"caller":"+14155****01","to":"+15557****21"}"#
    );
    assert_eq!(mask("dialled +14155550101."), "dialled +14155****01.");
    assert_eq!(
        mask("uri=/x?phone=%2B14155550101&y=1"),
        "uri=/x?phone=%2B14155****01&y=1"
    );
    assert_eq!(mask("to: +1 (415) 555-0101 done"), "to: +14155****01 done");
    assert_eq!(mask("+44 20 7946 0958"), "+44207****58");
}

#[test]
fn bare_digits_are_masked_only_after_a_phone_key() {
    assert_eq!(mask("From=14155550101"), "From=141555****01");
    assert_eq!(
        mask(r#""phone": "5517999991292""#),
        r#""phone": "551799****92""#
    );
    assert_eq!(mask("caller_id=14155550101"), "caller_id=141555****01");
    // ANSI colours between the key and the value (text logs on a terminal).
    assert_eq!(
        mask("\x1b[3mfrom\x1b[0m\x1b[2m=\x1b[0m14155550101"),
        "\x1b[3mfrom\x1b[0m\x1b[2m=\x1b[0m141555****01"
    );
    // Timestamps, counters and sids are not phone numbers.
    for kept in [
        "at_ms=1712345678901",
        "rows=123456789",
        "call_sid=CA1234567890123",
        "proto=14155550101",
        "from=1234567",
        "a+5 b",
        "1+14155550101",
    ] {
        assert_eq!(mask(kept), kept);
    }
}

#[test]
fn masking_is_idempotent_and_keeps_plain_text_borrowed() {
    let once = mask("from=+5517999991292");
    assert_eq!(mask(&once), once);
    assert!(matches!(
        mask_phone_numbers(b"nothing to see here"),
        Cow::Borrowed(_)
    ));
    // Not UTF-8: masked all the same, the rest passes through untouched.
    let bytes = [b"\xff from=+5517999991292 \xfe".as_slice()].concat();
    assert_eq!(
        mask_phone_numbers(&bytes).as_ref(),
        b"\xff from=+55179****92 \xfe".as_slice()
    );
}

#[test]
fn the_writer_masks_what_it_writes() {
    let mut out = Vec::new();
    {
        let mut w = MaskingWriter(&mut out);
        write!(w, "caller=+5517999991292 said hi").unwrap();
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "caller=+55179****92 said hi"
    );
}
