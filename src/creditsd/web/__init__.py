"""The pages people see in a browser: the billing page an end user opens through a portal
link (``/billing``) and the operators' admin console (``/admin``), rendered on the server."""
