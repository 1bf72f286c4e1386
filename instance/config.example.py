# Copy to instance/config.py and edit; every key can also be set as SWAGSTORE_<KEY>.
# Nothing here is required: with no STRIPE_SECRET_KEY the store runs on its offline sandbox.

# STRIPE_SECRET_KEY = "sk_test_..."        # or a restricted key; never commit a real one
# STRIPE_WEBHOOK_SECRET = "whsec_..."      # from `stripe listen` or the Dashboard
# STORE_ID = "booth"
# PURCHASE_MODE = "payment_link"           # or "reserved_checkout", "payment_intent"
# LINK_CAPTURE = "automatic"               # or "manual" (void instead of refund when oversold)
# PUBLIC_URL = "https://booth.example.com" # what phones reach, for modes 2 and 3
# HOLD_SECONDS = 300
# ADMIN_PASSWORD = "choose-a-long-one"
# LOCALE = "en_US"                         # how money reads: "de_DE" writes 25,00 €
# TIMEZONE = "America/Chicago"             # staff pages' times (default: this laptop's zone)
