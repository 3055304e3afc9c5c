"""GraphQL at ``/graphql`` (Strawberry) over the same services as the REST API (docs/api.md, "GraphQL")."""
