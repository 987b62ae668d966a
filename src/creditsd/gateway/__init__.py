"""An AI API gateway (sub2api-style) linked both ways, by seed 000's contract."""
