fn main() -> std::process::ExitCode {
    sonoguide::cli::main()
}
