"""The example operations shipped with acceptd: echo, sleep, IBAN validation and thumbnails."""
