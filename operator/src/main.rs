fn main() {
    eprintln!(
        "quarry-operator: not built yet (see the operator issue); run `make run` for the registry"
    );
    std::process::exit(2);
}
