fn main() {
    eprintln!("switchboard-loadtest: not built yet (issue 9)");
    std::process::exit(2);
}
