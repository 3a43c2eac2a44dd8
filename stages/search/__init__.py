"""`csra search`: the study (study.py), its space (space.py) and its records (records.py)."""
