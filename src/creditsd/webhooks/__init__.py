"""Messages out: signed webhooks and the gateway link, through an outbox that loses none."""
