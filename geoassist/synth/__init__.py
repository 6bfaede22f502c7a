"""GeoSynth: procedural Earth-observation scenes with exact ground truth."""
