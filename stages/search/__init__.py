"""`csra search`: the study (study.py), its trials and workers (trials.py), its storage, space and records."""
