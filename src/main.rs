fn main() {
    println!("caravan");
}
