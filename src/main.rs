fn main() {
    std::process::exit(herald::cli::main());
}
