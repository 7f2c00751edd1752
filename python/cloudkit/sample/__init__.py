"""Made-up data with known classes: the synthetic `.SAFE` writer (`synthetic`), the small
product cloudkit ships (`product`) and the demo that runs every command on it (`demo`)."""
