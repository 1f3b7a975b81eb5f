"""The language of Hyderabad Infra: events, their envelope, codecs and topics. No I/O here."""
