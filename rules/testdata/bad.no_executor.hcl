tool "noop" {
  description = "Does nothing."
  risk        = "low"
}
