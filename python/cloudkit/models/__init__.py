"""Networks and their files: encoders (`encoder`, `archs`, `band_slots`), segmentation
heads (`segmentation`), checkpoints (`checkpoint`), the shipped models (`zoo`, `card`).

Empty on purpose: `cloudkit models` reads the zoo without loading torch."""
