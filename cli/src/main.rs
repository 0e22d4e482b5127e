//! The `cairn` binary: the command line of `cairn_cli`, as shipped.

fn main() {
    cairn_cli::main()
}
