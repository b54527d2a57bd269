fn main() -> std::process::ExitCode {
    // HDF5 locks every file it opens (flock), and the lock lives as long as
    // any process holding the descriptor: a process that wrote a UFF while
    // another of its threads spawned a child leaks the lock into that child,
    // and reading the file then fails with "unable to lock file" (seen in
    // the tests, which write UFF files and run sonoguide in parallel).
    // sonoguide only reads finished files and writes its own temporary
    // ones, so it needs no lock. Set before any thread or HDF5 call; a
    // value the user set is kept.
    if std::env::var_os("HDF5_USE_FILE_LOCKING").is_none() {
        std::env::set_var("HDF5_USE_FILE_LOCKING", "FALSE");
    }
    sonoguide::cli::main()
}
