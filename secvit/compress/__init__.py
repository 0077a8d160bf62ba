"""Model compression: smaller students initialised from a teacher."""
