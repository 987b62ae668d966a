"""Clerk: users and organizations become accounts, subscriptions grant allowances."""
