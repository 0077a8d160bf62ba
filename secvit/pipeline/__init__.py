"""``secvit pipeline``: teacher -> compress -> rewrite and distil -> check -> profile, from one YAML."""
