//! Demo CRM data: owns `switchboard seed`. Generates customers (names in eight languages),
//! customer facts, pending and done tasks, past calls with summaries and a few transcripts,
//! deterministically from a seed, and writes them with large multi-row INSERTs through the
//! same `Any` pool as everything else. It never deletes data: seeding twice appends.
//!
//! Phone numbers are `+1 NPA 555 XXXX`: real US/Canada area codes with the 555 exchange, which
//! is kept out of service for fiction (555-1212, directory assistance, is skipped). They are
//! valid E.164 and cannot ring a real person.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::any::{Any, AnyArguments};
use sqlx::{Acquire, Arguments, AssertSqlSafe, Encode, Type};

use crate::storage::{Backend, Database, now_ms};

/// Customers per transaction. Commits keep the WAL small and show progress.
const CUSTOMERS_PER_TRANSACTION: u64 = 50_000;
/// Bound parameters per INSERT statement (both backends allow far more; this size is fastest).
const PARAMS_PER_STATEMENT: usize = 6_000;
/// The number the demo customers called.
const DEMO_TWILIO_NUMBER: &str = "+14155550100";

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub customers: u64,
    pub seed: u64,
    /// Print progress lines and a summary on stdout.
    pub progress: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub customers: u64,
    pub facts: u64,
    pub tasks: u64,
    pub calls: u64,
    pub messages: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "seeding {requested} more customers would exceed the {capacity} demo phone numbers available (database already has ids up to {existing})"
    )]
    TooMany {
        requested: u64,
        capacity: u64,
        existing: i64,
    },
    #[error("writing demo data failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("encoding a demo value failed: {0}")]
    Encode(String),
}

/// How many distinct demo phone numbers exist.
pub fn phone_capacity() -> u64 {
    AREA_CODES.len() as u64 * LINES_PER_AREA
}

/// The demo phone number of the customer with 0-based index `n`, or `None` past capacity.
pub fn demo_phone(n: u64) -> Option<String> {
    if n >= phone_capacity() {
        return None;
    }
    let areas = AREA_CODES.len() as u64;
    // Interleave area codes so neighbouring customers live in different cities.
    let area = AREA_CODES[(n % areas) as usize];
    let mut line = n / areas;
    if line >= 1212 {
        line += 1; // 555-1212 is directory assistance.
    }
    Some(format!("+1{area}555{line:04}"))
}

/// Loads `options.customers` customers with their facts, tasks and calls.
pub async fn seed(db: &Database, options: &SeedOptions) -> Result<SeedReport, SeedError> {
    let started = Instant::now();
    let existing: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM customers")
        .fetch_one(db.pool())
        .await?;
    let first = u64::try_from(existing).unwrap_or(0);
    if first.saturating_add(options.customers) > phone_capacity() {
        return Err(SeedError::TooMany {
            requested: options.customers,
            capacity: phone_capacity(),
            existing,
        });
    }
    let now = now_ms();
    let style = match db.backend() {
        Backend::Sqlite => Placeholders::Anonymous,
        Backend::Postgres => Placeholders::Numbered,
    };
    // Generation runs on its own thread and hands finished statements to this task, so building
    // rows and writing them overlap (one core each).
    let (work_tx, mut work_rx) = tokio::sync::mpsc::channel::<Work>(8);
    let (seed_value, total) = (options.seed, options.customers);
    let generator = tokio::task::spawn_blocking(move || {
        generate_all(style, seed_value, first, total, now, work_tx)
    });
    // One connection for the whole load, so its settings hold for every transaction.
    let mut conn = db.pool().acquire().await?;
    if db.backend() == Backend::Sqlite {
        // A 256 MiB page cache keeps the index pages of a million-row load in memory.
        sqlx::query("PRAGMA cache_size = -262144")
            .execute(&mut *conn)
            .await?;
    }
    let mut tx = conn.begin().await?;
    while let Some(work) = work_rx.recv().await {
        match work {
            Work::Insert { sql, args } => {
                sqlx::query_with(AssertSqlSafe(sql), args)
                    .execute(&mut *tx)
                    .await?;
            }
            Work::Commit { done } => {
                tx.commit().await?;
                if options.progress {
                    println!(
                        "seed: {done}/{total} customers ({:.1}s)",
                        started.elapsed().as_secs_f64()
                    );
                }
                tx = conn.begin().await?;
            }
        }
    }
    // A generator error leaves the last transaction uncommitted (rolled back on drop).
    let mut report = generator
        .await
        .map_err(|e| SeedError::Encode(format!("the generator thread failed: {e}")))??;
    tx.commit().await?;
    if db.backend() == Backend::Postgres && options.customers > 0 {
        // Ids were given explicitly; move the identity sequence past them for later inserts.
        sqlx::query(
            "SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT MAX(id) FROM customers))",
        )
        .execute(db.pool())
        .await?;
    }
    report.elapsed = started.elapsed();
    if options.progress {
        println!(
            "seed: done in {:.1}s: {} customers, {} facts, {} tasks, {} calls, {} messages ({} at {})",
            report.elapsed.as_secs_f64(),
            report.customers,
            report.facts,
            report.tasks,
            report.calls,
            report.messages,
            db.backend(),
            db.display_url()
        );
    }
    Ok(report)
}

// === Batched multi-row INSERTs ===

/// Rows waiting to be written to one table, already encoded as bind arguments. Rows are grouped
/// into statements of exactly `rows_per_statement` rows, so one prepared statement per table is
/// reused for the whole load; only the last statement of a transaction has another size.
struct Batch {
    table: &'static str,
    columns: &'static [&'static str],
    style: Placeholders,
    rows_per_statement: usize,
    /// SQL for a full statement, built once.
    full_sql: Arc<str>,
    /// Full statements' arguments, waiting to be sent.
    complete: Vec<AnyArguments>,
    /// The statement being filled.
    args: AnyArguments,
    rows: usize,
}

impl Batch {
    fn new(table: &'static str, columns: &'static [&'static str], style: Placeholders) -> Batch {
        let rows_per_statement = PARAMS_PER_STATEMENT / columns.len();
        Batch {
            table,
            columns,
            style,
            rows_per_statement,
            full_sql: insert_sql(table, columns, rows_per_statement, style).into(),
            complete: Vec::new(),
            args: AnyArguments::default(),
            rows: 0,
        }
    }

    fn add<'q, T>(&mut self, value: T) -> Result<(), SeedError>
    where
        T: Encode<'q, Any> + Type<Any> + 'q,
    {
        self.args
            .add(value)
            .map_err(|e| SeedError::Encode(e.to_string()))
    }

    fn end_row(&mut self) {
        self.rows += 1;
        if self.rows == self.rows_per_statement {
            self.complete.push(std::mem::take(&mut self.args));
            self.rows = 0;
        }
    }

    /// Sends the full statements.
    fn flush_complete(&mut self, out: &mut Vec<Work>) {
        for args in self.complete.drain(..) {
            out.push(Work::Insert {
                sql: Arc::clone(&self.full_sql),
                args,
            });
        }
    }

    /// Sends everything, including a last, shorter statement.
    fn flush(&mut self, out: &mut Vec<Work>) {
        self.flush_complete(out);
        if self.rows > 0 {
            let args = std::mem::take(&mut self.args);
            out.push(Work::Insert {
                sql: insert_sql(self.table, self.columns, self.rows, self.style).into(),
                args,
            });
            self.rows = 0;
        }
    }
}

/// One step for the writer: an INSERT to run, or the end of a transaction.
enum Work {
    Insert { sql: Arc<str>, args: AnyArguments },
    Commit { done: u64 },
}

/// Generates every customer in order and sends the statements; runs on a blocking thread.
fn generate_all(
    style: Placeholders,
    seed: u64,
    first: u64,
    total: u64,
    now: i64,
    out: tokio::sync::mpsc::Sender<Work>,
) -> Result<SeedReport, SeedError> {
    let mut report = SeedReport::default();
    let mut tables = Tables::new(style);
    let mut ready = Vec::new();
    for offset in 0..total {
        generate_customer(&mut tables, seed, first + offset, now, &mut report)?;
        tables.flush_full(&mut ready);
        let done = offset + 1;
        if done.is_multiple_of(CUSTOMERS_PER_TRANSACTION) || done == total {
            tables.flush_all(&mut ready);
            ready.push(Work::Commit { done });
        }
        for work in ready.drain(..) {
            // The writer stopped (it hit an error it will report): stop generating.
            if out.blocking_send(work).is_err() {
                return Ok(report);
            }
        }
    }
    Ok(report)
}

/// How bind parameters are written in the bulk INSERTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholders {
    /// `$1, $2, ...`: the project-wide style, used for PostgreSQL.
    Numbered,
    /// `?, ?, ...`: SQLite only. SQLite looks each named (`$N`) parameter up in a list, which
    /// makes binding a statement with thousands of parameters quadratic; anonymous ones are not.
    Anonymous,
}

fn insert_sql(table: &str, columns: &[&str], rows: usize, style: Placeholders) -> String {
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
    let mut n = 1;
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for col in 0..columns.len() {
            if col > 0 {
                sql.push(',');
            }
            match style {
                // Writing into a String cannot fail.
                Placeholders::Numbered => {
                    let _ = write!(sql, "${n}");
                }
                Placeholders::Anonymous => sql.push('?'),
            }
            n += 1;
        }
        sql.push(')');
    }
    sql
}

struct Tables {
    customers: Batch,
    facts: Batch,
    tasks: Batch,
    calls: Batch,
    messages: Batch,
}

impl Tables {
    fn new(style: Placeholders) -> Tables {
        Tables {
            customers: Batch::new(
                "customers",
                &[
                    "id",
                    "phone_e164",
                    "name",
                    "email",
                    "status",
                    "company",
                    "notes",
                    "language",
                    "created_at_ms",
                    "updated_at_ms",
                ],
                style,
            ),
            facts: Batch::new(
                "customer_facts",
                &["customer_id", "fact", "created_at_ms"],
                style,
            ),
            tasks: Batch::new(
                "tasks",
                &[
                    "customer_id",
                    "title",
                    "status",
                    "priority",
                    "due_at_ms",
                    "created_at_ms",
                    "updated_at_ms",
                ],
                style,
            ),
            calls: Batch::new(
                "calls",
                &[
                    "call_sid",
                    "customer_id",
                    "phone",
                    "to_number",
                    "direction",
                    "transport",
                    "started_at_ms",
                    "ended_at_ms",
                    "outcome",
                    "summary",
                    "final_state",
                    "restarts",
                    "name_source",
                ],
                style,
            ),
            messages: Batch::new(
                "messages",
                &[
                    "call_sid",
                    "seq",
                    "role",
                    "text",
                    "interrupted",
                    "created_at_ms",
                ],
                style,
            ),
        }
    }

    /// Sends full statements. Dependent rows go only right after their customers, because
    /// the foreign keys are checked row by row.
    fn flush_full(&mut self, out: &mut Vec<Work>) {
        if self.customers.complete.is_empty() {
            return;
        }
        self.customers.flush_complete(out);
        for batch in [
            &mut self.facts,
            &mut self.tasks,
            &mut self.calls,
            &mut self.messages,
        ] {
            batch.flush_complete(out);
        }
    }

    /// Sends everything (end of a transaction).
    fn flush_all(&mut self, out: &mut Vec<Work>) {
        self.customers.flush(out);
        for batch in [
            &mut self.facts,
            &mut self.tasks,
            &mut self.calls,
            &mut self.messages,
        ] {
            batch.flush(out);
        }
    }
}

// === Generation ===

/// The splitmix64 finalizer: a bijection on u64 that scatters nearby inputs.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64: tiny, fast, and good enough for demo data.
struct Rng(u64);

impl Rng {
    /// An independent stream per (seed, stream): starting points are scattered by `mix64` so
    /// streams do not run into each other.
    fn new(seed: u64, stream: u64) -> Rng {
        Rng(mix64(
            seed ^ mix64(stream.wrapping_add(0x632B_E59B_D9B4_E019)),
        ))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `lo..hi` milliseconds.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next() % (hi - lo) as u64) as i64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn generate_customer(
    t: &mut Tables,
    seed: u64,
    index: u64,
    now: i64,
    report: &mut SeedReport,
) -> Result<(), SeedError> {
    let mut rng = Rng::new(seed, index);
    let id = i64::try_from(index + 1).unwrap_or(i64::MAX);
    let Some(phone) = demo_phone(index) else {
        return Ok(());
    };
    let language = pick_language(&mut rng);
    let first = *rng.pick(language.first_names);
    let last = *rng.pick(language.last_names);
    let status = match rng.below(100) {
        0..=69 => "active",
        70..=84 => "lead",
        85..=92 => "churned",
        _ => "vip",
    };
    // A few leads called once and never gave a name.
    let named = !(status == "lead" && rng.chance(20));
    let name = named.then(|| language.full_name(first.0, last.0));
    let email = (named && rng.chance(75)).then(|| {
        let number = if rng.chance(30) {
            (rng.below(90) + 10).to_string()
        } else {
            String::new()
        };
        format!(
            "{}.{}{number}@{}",
            first.1,
            last.1,
            rng.pick(language.email_domains)
        )
    });
    let company = rng.chance(40).then(|| (*rng.pick(COMPANIES)).to_owned());
    let notes = rng.chance(25).then(|| (*rng.pick(NOTES)).to_owned());
    let created = now - rng.between(30 * DAY_MS, 1095 * DAY_MS);
    let updated = rng.between(created, now);

    let c = &mut t.customers;
    c.add(id)?;
    c.add(phone.clone())?;
    c.add(name)?;
    c.add(email)?;
    c.add(status)?;
    c.add(company)?;
    c.add(notes)?;
    c.add(language.code)?;
    c.add(created)?;
    c.add(updated)?;
    c.end_row();
    report.customers += 1;

    let fact_count = [0, 1, 1, 2, 2, 2, 3, 3, 4][rng.below(9) as usize];
    for _ in 0..fact_count {
        let fact = fact_text(&mut rng, language);
        let f = &mut t.facts;
        f.add(id)?;
        f.add(fact)?;
        f.add(rng.between(created, now))?;
        f.end_row();
        report.facts += 1;
    }

    let task_count = [0, 0, 1, 1, 1, 2, 2, 3][rng.below(8) as usize];
    for _ in 0..task_count {
        let title = task_title(&mut rng);
        let pending = rng.chance(45);
        let (due, created_task, updated_task) = if pending {
            let due = now + rng.between(-3 * DAY_MS, 30 * DAY_MS);
            let created_task = now - rng.between(0, 20 * DAY_MS);
            (due, created_task, created_task)
        } else {
            let due = now - rng.between(DAY_MS, 200 * DAY_MS);
            (due, due - rng.between(DAY_MS, 14 * DAY_MS), due)
        };
        let k = &mut t.tasks;
        k.add(id)?;
        k.add(title)?;
        k.add(if pending { "pending" } else { "done" })?;
        k.add(1 + rng.below(3) as i32)?;
        k.add(due)?;
        k.add(created_task)?;
        k.add(updated_task)?;
        k.end_row();
        report.tasks += 1;
    }

    let call_count = [0, 1, 1, 1, 2][rng.below(5) as usize];
    for call in 0..call_count {
        // The second half is a bijection of (customer, call): unique by construction.
        let sid = format!(
            "CA{:016x}{:016x}",
            rng.next(),
            mix64((index << 2 | call) ^ 0x5DEE_CE66_D1CE_4E5B)
        );
        let started = now - rng.between(3_600_000, 365 * DAY_MS);
        let ended = started + rng.between(30_000, 900_000);
        let (outcome, summary) = call_summary(&mut rng, name_or_caller(named, first.0));
        let inbound = rng.chance(85);
        let k = &mut t.calls;
        k.add(sid.clone())?;
        k.add(id)?;
        k.add(phone.clone())?;
        k.add(DEMO_TWILIO_NUMBER)?;
        k.add(if inbound { "inbound" } else { "outbound-api" })?;
        k.add("media")?;
        k.add(started)?;
        k.add(ended)?;
        k.add(outcome)?;
        k.add(summary)?;
        k.add("ended")?;
        k.add(0i32)?;
        k.add(if named { Some("crm") } else { None })?;
        k.end_row();
        report.calls += 1;
        // A transcript for one call in ten, so conversation history has something to show.
        if call == 0 && index.is_multiple_of(10) {
            let lines = transcript(named.then_some(first.0));
            for (seq, (role, text)) in lines.iter().enumerate() {
                let m = &mut t.messages;
                m.add(sid.clone())?;
                m.add(seq as i64)?;
                m.add(*role)?;
                m.add(text.clone())?;
                m.add(0i32)?; // interrupted: INTEGER 0/1 in both backends
                m.add(started + seq as i64 * 4_000)?;
                m.end_row();
                report.messages += 1;
            }
        }
    }
    Ok(())
}

fn name_or_caller(named: bool, first: &str) -> &str {
    if named { first } else { "The caller" }
}

struct Language {
    code: &'static str,
    /// (as written, ASCII for e-mail addresses)
    first_names: &'static [(&'static str, &'static str)],
    last_names: &'static [(&'static str, &'static str)],
    email_domains: &'static [&'static str],
    family_name_first: bool,
    weight: u64,
}

impl Language {
    fn full_name(&self, first: &str, last: &str) -> String {
        match (self.family_name_first, self.code) {
            (true, "zh") => format!("{last}{first}"),
            (true, _) => format!("{last} {first}"),
            (false, _) => format!("{first} {last}"),
        }
    }
}

fn pick_language(rng: &mut Rng) -> &'static Language {
    let total: u64 = LANGUAGES.iter().map(|l| l.weight).sum();
    let mut roll = rng.below(total);
    for language in LANGUAGES {
        if roll < language.weight {
            return language;
        }
        roll -= language.weight;
    }
    &LANGUAGES[0]
}

fn fact_text(rng: &mut Rng, language: &Language) -> String {
    match rng.below(12) {
        0 => format!(
            "Prefers to be called in the {}",
            rng.pick(&["morning", "afternoon", "evening"])
        ),
        1 => format!(
            "Has a {} named {}",
            rng.pick(&["dog", "cat", "parrot"]),
            rng.pick(PET_NAMES)
        ),
        2 => format!("Birthday in {}", rng.pick(MONTHS)),
        3 => format!("Drives a {}", rng.pick(CARS)),
        4 => format!("Customer since {}", 2012 + rng.below(13)),
        5 => format!("Prefers to speak {}", language_name(language.code)),
        6 => format!(
            "Plan: {}",
            rng.pick(&["Basic", "Plus", "Premium", "Business"])
        ),
        7 => format!(
            "Allergic to {}",
            rng.pick(&["peanuts", "shellfish", "gluten", "pollen"])
        ),
        8 => format!("Has {} children", 1 + rng.below(4)),
        9 => format!("Works as a {}", rng.pick(JOBS)),
        10 => "Prefers e-mail over phone for paperwork".to_owned(),
        _ => format!("Last order #{}", 100_000 + rng.below(900_000)),
    }
}

fn task_title(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => "Send renewal quote".to_owned(),
        1 => format!("Call back about invoice #{}", 10_000 + rng.below(90_000)),
        2 => "Schedule installation visit".to_owned(),
        3 => format!("Follow up on support ticket #{}", 1_000 + rng.below(9_000)),
        4 => "Confirm delivery address".to_owned(),
        5 => "Offer upgrade to Premium".to_owned(),
        6 => "Collect feedback on last visit".to_owned(),
        _ => "Update payment method".to_owned(),
    }
}

fn call_summary(rng: &mut Rng, who: &str) -> (&'static str, String) {
    match rng.below(6) {
        0 => (
            "resolved",
            format!(
                "{who} asked about a charge on the last invoice; the agent explained it and the caller was satisfied."
            ),
        ),
        1 => (
            "callback-scheduled",
            format!(
                "{who} wants to change their plan; a callback was scheduled for {}.",
                rng.pick(&["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])
            ),
        ),
        2 => (
            "resolved",
            format!("{who} reported a delivery delay; the agent confirmed the new delivery date."),
        ),
        3 => (
            "escalated",
            format!(
                "{who} had a technical problem the agent could not solve; escalated to support ticket #{}.",
                1_000 + rng.below(9_000)
            ),
        ),
        4 => (
            "resolved",
            format!("{who} updated their address and asked about opening hours."),
        ),
        _ => (
            "abandoned",
            format!("{who} hung up before stating the reason for the call."),
        ),
    }
}

fn transcript(name: Option<&str>) -> Vec<(&'static str, String)> {
    let greeting = match name {
        Some(name) => format!("Hi {name}, welcome back! How can I help you today?"),
        None => "Hello, thanks for calling. May I have your name?".to_owned(),
    };
    vec![
        ("agent", greeting),
        ("caller", "Hi, I wanted to check on my last invoice.".to_owned()),
        (
            "agent",
            "Of course. I can see the invoice from last month; the extra charge is the installation fee.".to_owned(),
        ),
        ("caller", "Ah, that makes sense. Thanks!".to_owned()),
        ("agent", "You're welcome. Anything else I can do for you?".to_owned()),
        ("caller", "No, that's all. Bye.".to_owned()),
    ]
}

fn language_name(code: &str) -> &'static str {
    match code {
        "es" => "Spanish",
        "pt" => "Portuguese",
        "fr" => "French",
        "de" => "German",
        "it" => "Italian",
        "ja" => "Japanese",
        "zh" => "Mandarin",
        _ => "English",
    }
}

const LANGUAGES: &[Language] = &[
    Language {
        code: "en",
        first_names: &[
            ("James", "james"),
            ("Mary", "mary"),
            ("Robert", "robert"),
            ("Patricia", "patricia"),
            ("John", "john"),
            ("Jennifer", "jennifer"),
            ("Michael", "michael"),
            ("Linda", "linda"),
            ("David", "david"),
            ("Elizabeth", "elizabeth"),
            ("William", "william"),
            ("Sarah", "sarah"),
            ("Emily", "emily"),
            ("Daniel", "daniel"),
            ("Olivia", "olivia"),
            ("Noah", "noah"),
        ],
        last_names: &[
            ("Smith", "smith"),
            ("Johnson", "johnson"),
            ("Williams", "williams"),
            ("Brown", "brown"),
            ("Jones", "jones"),
            ("Miller", "miller"),
            ("Davis", "davis"),
            ("Wilson", "wilson"),
            ("Anderson", "anderson"),
            ("Taylor", "taylor"),
            ("Thomas", "thomas"),
            ("Moore", "moore"),
            ("O'Brien", "obrien"),
            ("Clarke", "clarke"),
            ("Walker", "walker"),
            ("Young", "young"),
        ],
        email_domains: &[
            "gmail.com",
            "outlook.com",
            "yahoo.com",
            "icloud.com",
            "example.com",
        ],
        family_name_first: false,
        weight: 40,
    },
    Language {
        code: "es",
        first_names: &[
            ("José", "jose"),
            ("María", "maria"),
            ("Alejandro", "alejandro"),
            ("Lucía", "lucia"),
            ("Javier", "javier"),
            ("Carmen", "carmen"),
            ("Diego", "diego"),
            ("Sofía", "sofia"),
            ("Pablo", "pablo"),
            ("Valentina", "valentina"),
            ("Andrés", "andres"),
            ("Isabel", "isabel"),
        ],
        last_names: &[
            ("García", "garcia"),
            ("Martínez", "martinez"),
            ("López", "lopez"),
            ("Hernández", "hernandez"),
            ("González", "gonzalez"),
            ("Pérez", "perez"),
            ("Sánchez", "sanchez"),
            ("Ramírez", "ramirez"),
            ("Torres", "torres"),
            ("Flores", "flores"),
            ("Núñez", "nunez"),
            ("Castillo", "castillo"),
        ],
        email_domains: &["gmail.com", "hotmail.es", "yahoo.es", "outlook.com"],
        family_name_first: false,
        weight: 15,
    },
    Language {
        code: "pt",
        first_names: &[
            ("João", "joao"),
            ("Ana", "ana"),
            ("Pedro", "pedro"),
            ("Beatriz", "beatriz"),
            ("Lucas", "lucas"),
            ("Mariana", "mariana"),
            ("Gonçalo", "goncalo"),
            ("Inês", "ines"),
            ("Rafael", "rafael"),
            ("Camila", "camila"),
            ("Tiago", "tiago"),
            ("Larissa", "larissa"),
        ],
        last_names: &[
            ("Silva", "silva"),
            ("Santos", "santos"),
            ("Oliveira", "oliveira"),
            ("Souza", "souza"),
            ("Pereira", "pereira"),
            ("Costa", "costa"),
            ("Rodrigues", "rodrigues"),
            ("Almeida", "almeida"),
            ("Conceição", "conceicao"),
            ("Ferreira", "ferreira"),
            ("Gonçalves", "goncalves"),
            ("Araújo", "araujo"),
        ],
        email_domains: &["gmail.com", "uol.com.br", "sapo.pt", "outlook.com"],
        family_name_first: false,
        weight: 10,
    },
    Language {
        code: "fr",
        first_names: &[
            ("François", "francois"),
            ("Chloé", "chloe"),
            ("Louis", "louis"),
            ("Camille", "camille"),
            ("Hugo", "hugo"),
            ("Léa", "lea"),
            ("Étienne", "etienne"),
            ("Manon", "manon"),
            ("Julien", "julien"),
            ("Élodie", "elodie"),
            ("Mathis", "mathis"),
            ("Inès", "ines"),
        ],
        last_names: &[
            ("Martin", "martin"),
            ("Bernard", "bernard"),
            ("Dubois", "dubois"),
            ("Thomas", "thomas"),
            ("Robert", "robert"),
            ("Petit", "petit"),
            ("Durand", "durand"),
            ("Leroy", "leroy"),
            ("Lefèvre", "lefevre"),
            ("Moreau", "moreau"),
            ("Girard", "girard"),
            ("Rousseau", "rousseau"),
        ],
        email_domains: &["gmail.com", "orange.fr", "free.fr", "laposte.net"],
        family_name_first: false,
        weight: 8,
    },
    Language {
        code: "de",
        first_names: &[
            ("Lukas", "lukas"),
            ("Anna", "anna"),
            ("Jürgen", "juergen"),
            ("Sophie", "sophie"),
            ("Maximilian", "maximilian"),
            ("Lena", "lena"),
            ("Jörg", "joerg"),
            ("Hannah", "hannah"),
            ("Felix", "felix"),
            ("Katharina", "katharina"),
            ("Stefan", "stefan"),
            ("Jülide", "juelide"),
        ],
        last_names: &[
            ("Müller", "mueller"),
            ("Schmidt", "schmidt"),
            ("Schneider", "schneider"),
            ("Fischer", "fischer"),
            ("Weber", "weber"),
            ("Meyer", "meyer"),
            ("Wagner", "wagner"),
            ("Becker", "becker"),
            ("Schäfer", "schaefer"),
            ("Hoffmann", "hoffmann"),
            ("Koch", "koch"),
            ("Größer", "groesser"),
        ],
        email_domains: &["gmail.com", "web.de", "gmx.de", "t-online.de"],
        family_name_first: false,
        weight: 8,
    },
    Language {
        code: "it",
        first_names: &[
            ("Giuseppe", "giuseppe"),
            ("Giulia", "giulia"),
            ("Marco", "marco"),
            ("Francesca", "francesca"),
            ("Luca", "luca"),
            ("Chiara", "chiara"),
            ("Niccolò", "niccolo"),
            ("Sara", "sara"),
        ],
        last_names: &[
            ("Rossi", "rossi"),
            ("Russo", "russo"),
            ("Ferrari", "ferrari"),
            ("Esposito", "esposito"),
            ("Bianchi", "bianchi"),
            ("Romano", "romano"),
            ("Colombo", "colombo"),
            ("De Luca", "deluca"),
        ],
        email_domains: &["gmail.com", "libero.it", "virgilio.it"],
        family_name_first: false,
        weight: 6,
    },
    Language {
        code: "ja",
        first_names: &[
            ("美咲", "misaki"),
            ("翔太", "shota"),
            ("陽菜", "hina"),
            ("大翔", "hiroto"),
            ("結衣", "yui"),
            ("蓮", "ren"),
            ("さくら", "sakura"),
            ("健一", "kenichi"),
        ],
        last_names: &[
            ("佐藤", "sato"),
            ("鈴木", "suzuki"),
            ("高橋", "takahashi"),
            ("田中", "tanaka"),
            ("伊藤", "ito"),
            ("渡辺", "watanabe"),
            ("山本", "yamamoto"),
            ("中村", "nakamura"),
        ],
        email_domains: &["gmail.com", "yahoo.co.jp", "docomo.ne.jp"],
        family_name_first: true,
        weight: 7,
    },
    Language {
        code: "zh",
        first_names: &[
            ("伟", "wei"),
            ("芳", "fang"),
            ("娜", "na"),
            ("强", "qiang"),
            ("静", "jing"),
            ("磊", "lei"),
            ("敏", "min"),
            ("洋", "yang"),
        ],
        last_names: &[
            ("王", "wang"),
            ("李", "li"),
            ("张", "zhang"),
            ("刘", "liu"),
            ("陈", "chen"),
            ("杨", "yang"),
            ("黄", "huang"),
            ("赵", "zhao"),
        ],
        email_domains: &["qq.com", "163.com", "gmail.com"],
        family_name_first: true,
        weight: 6,
    },
];

const COMPANIES: &[&str] = &[
    "Acme Logistics",
    "Blue Harbor Dental",
    "Northwind Traders",
    "Contoso Pharmacy",
    "Globex Energy",
    "Initech Software",
    "Umbrella Insurance",
    "Stark Plumbing",
    "Wayne Catering",
    "Oceanic Travel",
    "Cyberdyne Robotics",
    "Hooli Media",
    "Panadería La Espiga",
    "Boulangerie du Coin",
    "Müller Bau GmbH",
    "Sakura Denki",
    "Padaria Pão Quente",
    "Trattoria Da Gino",
    "Red Lantern Imports",
    "Green Valley Farms",
];

const NOTES: &[&str] = &[
    "Prefers a callback over voicemail.",
    "Asked not to be contacted on weekends.",
    "Long-time customer, very price sensitive.",
    "Interested in the annual plan.",
    "Had a billing dispute last year, resolved.",
    "Speaks slowly; be patient and confirm details.",
    "Referred two friends.",
    "Hard of hearing; speak clearly.",
];

const PET_NAMES: &[&str] = &[
    "Max", "Luna", "Bella", "Charlie", "Mochi", "Rocky", "Nala", "Toby",
];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const CARS: &[&str] = &[
    "Toyota Corolla",
    "Ford F-150",
    "Honda Civic",
    "Tesla Model 3",
    "VW Golf",
    "Fiat 500",
];
const JOBS: &[&str] = &[
    "nurse",
    "teacher",
    "software engineer",
    "electrician",
    "chef",
    "accountant",
    "farmer",
    "lawyer",
];

/// Real US and Canadian area codes; combined with the fictional 555 exchange.
const AREA_CODES: &[u16] = &[
    201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225,
    228, 229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 276, 281,
    301, 302, 303, 304, 305, 307, 308, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    323, 325, 330, 334, 336, 337, 339, 347, 351, 352, 360, 361, 385, 386, 401, 402, 404, 405, 406,
    407, 408, 409, 410, 412, 413, 414, 415, 416, 417, 419, 423, 424, 425, 432, 434, 435, 440, 443,
    469, 478, 479, 480, 484, 501, 502, 503, 504, 505, 507, 508, 509, 510, 512, 513, 514, 515, 516,
    517, 518, 520, 530, 540, 541, 551, 559, 561, 562, 563, 567, 570, 571, 573, 574, 575, 580, 585,
    586, 601, 602, 603, 604, 605, 606, 607, 608, 609, 610, 612, 614, 615, 616, 617, 618, 619, 620,
    623, 626, 630, 631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 701, 702, 703, 704, 706, 707,
    708, 712, 713, 714, 715, 716, 717, 718, 719, 720, 724, 727, 731, 732, 734, 740, 754, 757, 760,
    763, 765, 770, 772, 773, 774, 775, 781, 785, 786, 801, 802, 803, 804, 805, 806, 808, 810, 812,
    813, 814, 815, 816, 817, 818, 828, 830, 831, 832, 843, 845, 847, 848, 850, 856, 857, 858, 859,
    860, 862, 863, 864, 865, 870, 872, 878, 901, 903, 904, 905, 906, 907, 908, 909, 910, 912, 913,
    914, 915, 916, 917, 918, 919, 920, 925, 928, 931, 936, 937, 940, 941, 947, 949, 951, 952, 954,
    956, 970, 971, 972, 973, 978, 979, 980, 985, 989,
];
/// 555-0000 to 555-9999 without 555-1212.
const LINES_PER_AREA: u64 = 9_999;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_phones_are_unique_e164() {
        let mut seen = std::collections::HashSet::new();
        for n in (0..phone_capacity())
            .step_by(997)
            .chain([0, 1, phone_capacity() - 1])
        {
            let phone = demo_phone(n).unwrap_or_default();
            assert_eq!(phone.len(), 12, "{phone}");
            assert!(phone.starts_with("+1"));
            assert!(phone[1..].bytes().all(|b| b.is_ascii_digit()));
            assert!(!phone.ends_with("5551212"));
            seen.insert(phone);
        }
        assert!(demo_phone(phone_capacity()).is_none());
        assert!(phone_capacity() >= 2_000_000);
        let all: std::collections::HashSet<_> = (0..50_000).filter_map(demo_phone).collect();
        assert_eq!(all.len(), 50_000);
    }

    #[test]
    fn insert_sql_numbers_placeholders_in_order() {
        assert_eq!(
            insert_sql("t", &["a", "b"], 2, Placeholders::Numbered),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4)"
        );
        assert_eq!(
            insert_sql("t", &["a", "b"], 2, Placeholders::Anonymous),
            "INSERT INTO t (a, b) VALUES (?,?),(?,?)"
        );
    }
}
