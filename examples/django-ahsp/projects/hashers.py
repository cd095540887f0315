from django.contrib.auth.hashers import PBKDF2PasswordHasher


class SeededPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2-SHA256, checking each hash at the iteration count
    stored in it (as Django does) and never asking to rewrite it."""

    def must_update(self, encoded):
        return False
