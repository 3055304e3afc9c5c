"""The cost limit of GraphQL operations (the depth limit is strawberry's ``QueryDepthLimiter``).

The cost of an operation is an upper bound of the objects and values it can make the server
produce: every selected field costs 1, and the selection under a field with a ``first`` argument
(a connection) counts ``first`` times — ``tasks(first: 50) { edges { node { id title } } }`` costs
``1 + 50 * (1 + 1 + 1 + 1) = 201``. ``first`` is read from the literal, the variables, or the
argument's default, and capped at the most a connection returns (``MAX_LIMIT``, 100: a larger
value is refused by the field itself). Fragments count where they are spread; introspection
fields count like any other.

An operation over ``max_cost`` (``TASKHUB_GRAPHQL_MAX_COST``, default 5,000) is refused before
anything executes, with the problem type ``query-too-costly`` (status 400) and the estimate in
``extensions.cost``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from strawberry.extensions import SchemaExtension

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from taskhub.core.pagination import MAX_LIMIT
from taskhub.graphql.errors import QUERY_TOO_COSTLY, problem_extensions


class _Estimator:
    def __init__(
        self, schema: GraphQLSchema, fragments: Mapping[str, FragmentDefinitionNode], variables: Mapping[str, Any]
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def _first(self, node: FieldNode, default: Any) -> int:
        value: Any = default
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            if isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                value = self.variables.get(argument.value.name.value, default)
        if isinstance(value, bool) or not isinstance(value, int):
            return MAX_LIMIT  # not an integer: the field refuses it; count the most it could cost
        return max(0, min(value, MAX_LIMIT))

    def selection_set(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None, seen: frozenset[str]
    ) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, seen)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition is not None else parent
                total += self.selection_set(selection.selection_set, target, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:  # unknown or cyclic: validation reports it
                    continue
                target = self.schema.get_type(fragment.type_condition.name.value)
                total += self.selection_set(fragment.selection_set, target, seen | {name})
        return total

    def field(self, node: FieldNode, parent: GraphQLNamedType | None, seen: frozenset[str]) -> int:
        definition = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(node.name.value)
        if node.selection_set is None:
            return 1
        child_type = get_named_type(definition.type) if definition is not None else None
        children = self.selection_set(node.selection_set, child_type, seen)
        multiplier = 1
        if definition is not None and "first" in definition.args:
            multiplier = self._first(node, definition.args["first"].default_value)
        return 1 + multiplier * children


def estimate_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any] | None,
) -> int:
    """The cost of ``operation`` (see the module docstring) with the given variable values."""
    root = {
        OperationType.QUERY: schema.query_type,
        OperationType.MUTATION: schema.mutation_type,
        OperationType.SUBSCRIPTION: schema.subscription_type,
    }[operation.operation]
    estimator = _Estimator(schema, fragments, variables or {})
    return estimator.selection_set(operation.selection_set, root, frozenset())


class QueryCostLimiter(SchemaExtension):
    """Refuse operations whose :func:`estimate_cost` is over ``max_cost``, before execution.

    It runs when execution starts (after validation, with the variables known), not as a
    validation rule: graphql-core's validation sees no variables, and ``first`` is usually one.
    """

    def __init__(self, *, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        """Set a refusal as the result (strawberry then skips execution) when the cost is too high."""
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            operation = get_operation_ast(document, context.operation_name)
            if operation is not None:
                fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
                cost = estimate_cost(context.schema._schema, operation, fragments, context.variables)
                if cost > self.max_cost:
                    extensions = problem_extensions(status=400, slug=QUERY_TOO_COSTLY, title="Query too costly")
                    extensions["cost"] = cost
                    extensions["max_cost"] = self.max_cost
                    error = GraphQLError(
                        f"The operation's estimated cost {cost} is over the limit of {self.max_cost}; "
                        "ask for fewer items (first) or fewer fields.",
                        nodes=[operation],
                        extensions=extensions,
                    )
                    context.result = ExecutionResult(data=None, errors=[error])
        yield
