//! Caller ids → E.164: the shared fixture of example numbers of 30 regions, the shapes callers and
//! Twilio send, and everything that must never become a number.

use switchboard_actors::phone::{E164, PhoneError, Region, caller_from_raw, parse_region, warm_up};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/fixtures/phone/example_numbers_e164.csv"
);

fn us() -> Region {
    Region::US
}

fn e164(raw: &str) -> Result<String, PhoneError> {
    E164::parse(raw, us()).map(E164::into_string)
}

struct Row {
    region: String,
    national_prefix: String,
    kind: String,
    national: String,
    e164: String,
}

fn fixture_rows() -> Vec<Row> {
    let text = std::fs::read_to_string(FIXTURE).expect("shared phone fixture is readable");
    let mut lines = text.lines();
    let header = lines.next().expect("fixture has a header");
    assert_eq!(
        header,
        "region,country_code,national_prefix,type,national_significant_number(exampleNumber),e164",
        "fixture columns changed"
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            assert_eq!(cols.len(), 6, "malformed fixture line {line:?}");
            Row {
                region: cols[0].to_owned(),
                national_prefix: cols[2].to_owned(),
                kind: cols[3].to_owned(),
                national: cols[4].to_owned(),
                e164: cols[5].to_owned(),
            }
        })
        .collect()
}

#[test]
fn every_fixture_number_normalises_to_its_e164_form() {
    warm_up();
    let rows = fixture_rows();
    assert!(rows.len() >= 90, "fixture has {} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let label = format!("{} {} {}", row.region, row.kind, row.national);
        let mut check = |input: String, region: Region| match E164::parse(&input, region) {
            Ok(n) if n.as_str() == row.e164 => {}
            other => failures.push(format!("{label}: {input:?} → {other:?}, want {}", row.e164)),
        };
        // As Twilio sends it, whatever the default region.
        check(row.e164.clone(), us());
        // With the ITU international prefix instead of `+`.
        check(format!("00{}", &row.e164[1..]), us());
        // Written nationally, in its own region (the `001` rows are non-geographic: no region).
        if row.region != "001" {
            let region = parse_region(&row.region).expect("fixture regions are known");
            check(row.national.clone(), region);
            if !row.national_prefix.is_empty() {
                check(format!("{}{}", row.national_prefix, row.national), region);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shapes_callers_and_twilio_send() {
    for (raw, want) in [
        ("+15550123456", "+15550123456"),
        ("+1-555-012-3456", "+15550123456"),
        ("+1 (555) 012-3456", "+15550123456"),
        ("(555) 012-3456", "+15550123456"),
        ("555.012.3456", "+15550123456"),
        ("15550123456", "+15550123456"),
        ("1 555 012 3456", "+15550123456"),
        ("  +15550123456\n", "+15550123456"),
        // The seed data's numbers: real area code, fictional 555 exchange.
        ("+14155550100", "+14155550100"),
        ("4155550100", "+14155550100"),
        // Digits with a foreign country code and no `+`: not a US number, so read as if `+`.
        ("5517999991292", "+5517999991292"),
        ("447911123456", "+447911123456"),
        // International prefixes: the ITU `00` and the US `011`.
        ("0044 20 7946 0000", "+442079460000"),
        ("00 55 17 99999 1292", "+5517999991292"),
        ("011 44 20 7946 0000", "+442079460000"),
        // Another country with a US default region: no US prefix stripping after `+55`.
        ("+5511961234567", "+5511961234567"),
        ("+55 17 99999-1292", "+5517999991292"),
        // Digits after `+` are kept as written (a Russian toll-free number starts with the Russian
        // national prefix, 8), but a written-out national prefix after the country code is dropped.
        ("+7 800 123-45-67", "+78001234567"),
        ("+33 (0)6 31 96 65 43", "+33631966543"),
    ] {
        assert_eq!(e164(raw).as_deref(), Ok(want), "{raw:?}");
    }
}

#[test]
fn the_default_region_decides_national_numbers() {
    let br = parse_region("BR").expect("BR is a region");
    let gb = parse_region("gb").expect("lower case is fine");
    assert_eq!(
        E164::parse("(17) 99999-1292", br).map(E164::into_string),
        Ok("+5517999991292".into())
    );
    assert_eq!(
        E164::parse("020 7946 0000", gb).map(E164::into_string),
        Ok("+442079460000".into())
    );
    let ru = parse_region("RU").expect("RU is a region");
    assert_eq!(
        E164::parse("8 800 123-45-67", ru).map(E164::into_string),
        Ok("+78001234567".into())
    );
    // The same national digits mean something else in the US: not a number there.
    assert!(E164::parse("020 7946 0000", us()).is_err());
}

#[test]
fn non_numbers_are_rejected() {
    for raw in [
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "ANONYMOUS",
        "restricted",
        "unknown",
        "private",
        "client:alice",
        "client:+15550123456",
        "sip:bob@example.com",
        "sip:+15550123456@sip.twilio.com",
        "+1 800 FLOWERS",
        "555-0123 x12",
        "+15550123456;ext=12",
        "abc",
        "12",
        "+",
        "--",
        "+1234567890123456",
        "1234567890123456789",
        "+999 123 456 789",
        "+1 555 012 345",
        "+1 555 012 34567",
        "+1 123 456 7890",
        "0",
        "+0123456789",
        "+15550123456+",
        "📞 5550123456",
    ] {
        let parsed = e164(raw);
        assert!(parsed.is_err(), "{raw:?} became {parsed:?}");
        assert_eq!(caller_from_raw(raw, us()).e164, None, "{raw:?}");
    }
}

#[test]
fn errors_say_why() {
    assert_eq!(e164(""), Err(PhoneError::Empty));
    assert_eq!(e164("anonymous"), Err(PhoneError::NotANumber('a')));
    assert_eq!(e164("client:alice"), Err(PhoneError::NotANumber('c')));
    assert_eq!(
        e164("+1234567890123456"),
        Err(PhoneError::TooLong { digits: 16 })
    );
    assert_eq!(e164("+1 123 456 7890"), Err(PhoneError::Invalid));
    // The message never repeats the number.
    let message = PhoneError::TooLong { digits: 16 }.to_string();
    assert!(!message.contains("1234"), "{message}");
}

#[test]
fn caller_keeps_the_raw_id_and_adds_e164_only_for_numbers() {
    let caller = caller_from_raw("(555) 012-3456", us());
    assert_eq!(caller.raw, "(555) 012-3456");
    assert_eq!(caller.e164.as_deref(), Some("+15550123456"));
    let caller = caller_from_raw("client:alice", us());
    assert_eq!(caller.raw, "client:alice");
    assert_eq!(caller.e164, None);
}

#[test]
fn regions_parse_from_config_values() {
    assert_eq!(parse_region("US"), Ok(Region::US));
    assert_eq!(parse_region(" us "), Ok(Region::US));
    assert_eq!(parse_region("BR").map(|r| r.to_string()), Ok("BR".into()));
    assert_eq!(
        parse_region("PT").map(|r| r.as_str().to_owned()),
        Ok("PT".into())
    );
    for bad in ["", "U", "USA", "XX", "001", "12", "Brazil"] {
        match parse_region(bad) {
            Err(PhoneError::UnknownRegion(value)) => assert_eq!(value, bad),
            other => panic!("{bad:?} gave {other:?}"),
        }
        let message = parse_region(bad).map(|_| ()).unwrap_err().to_string();
        assert!(message.contains(&format!("{bad:?}")), "{message}");
    }
}

#[test]
fn serde_round_trips_as_a_string_and_checks_on_the_way_in() {
    let number = E164::parse("(555) 012-3456", us()).expect("a number");
    let json = serde_json::to_string(&number).expect("serializes");
    assert_eq!(json, "\"+15550123456\"");
    let back: E164 = serde_json::from_str(&json).expect("deserializes");
    assert_eq!(back, number);
    for bad in [
        "\"anonymous\"",
        "\"(555) 012-3456\"",
        "\"+1 555 012 3456\"",
        "15550123456",
    ] {
        assert!(serde_json::from_str::<E164>(bad).is_err(), "{bad}");
    }
}
