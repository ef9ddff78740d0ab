fn main() {
    println!("switchboard: foundation in progress");
}
