//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so
//! building needs no `protoc` on the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/samvad.proto", "proto/bus.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
