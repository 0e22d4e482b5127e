// Key substitution and revocation attacks.
