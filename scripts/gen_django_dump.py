#!/usr/bin/env python3
"""Writes a synthetic `dumpdata accounts otp_totp otp_static` file of N users (bench only):
every tenth user has a confirmed TOTP device and five emergency codes. The hash is one real
pbkdf2_sha256 hash reused (an import never verifies it)."""
import json, os, sys

n = int(sys.argv[1]); out = sys.argv[2]
HASH = "pbkdf2_sha256$600000$65FLHEg8cuBerzro0fTmlT$Z122n03/V1MB7VeXfZoHlZQ0WfeunfqYnHfyOto8C8Q="
ALPHA = "abcdefghijklmnopqrstuvwxyz234567"
with open(out, "w") as f:
    f.write("[\n")
    first = True
    def put(rec):
        global first
        f.write(("" if first else ",\n") + json.dumps(rec)); first = False
    for pk in range(1, n + 1):
        put({"model": "accounts.user", "pk": pk, "fields": {"password": HASH, "last_login": None,
             "is_superuser": False, "email": f"user{pk}@example.org", "is_staff": False,
             "is_active": pk % 50 != 0, "date_joined": "2024-01-01T00:00:00Z",
             "jwt_secret": "x", "groups": [], "user_permissions": []}})
    for pk in range(10, n + 1, 10):
        put({"model": "otp_totp.totpdevice", "pk": pk // 10, "fields": {"user": pk, "name": "",
             "confirmed": True, "key": os.urandom(20).hex(), "step": 30, "t0": 0, "digits": 6,
             "tolerance": 1, "drift": 0, "last_t": 1}})
    for pk in range(10, n + 1, 10):
        put({"model": "otp_static.staticdevice", "pk": pk // 10, "fields": {"user": pk, "name": "Static", "confirmed": True}})
    t = 0
    for pk in range(10, n + 1, 10):
        for _ in range(5):
            t += 1
            code = "".join(ALPHA[b % 32] for b in os.urandom(8))
            put({"model": "otp_static.statictoken", "pk": t, "fields": {"device": pk // 10, "token": code}})
    f.write("\n]\n")
