//! `samvad-load`: the load harness (scenarios grow in loadtest/).
fn main() {
    println!("samvad-load: see `cargo run -p samvad-load -- --help`");
}
