"""The type registry: which codec writes a type, which codec reads a tag.

Dispatch follows cattrs: the exact type first, then the MRO (a registered custom serializer
serves subclasses unless they are registered themselves), then derivation predicates
(pydantic model, dataclass, enum, NamedTuple). Each answer becomes a *plan* cached by type
(encoding) or by tag (decoding); every registration clears both caches under the lock.

A tag's name resolves to (a) a registered or built-in codec, or (b) a model, enum, dataclass
or NamedTuple that the running process has already defined, or that lies in a module the
application trusts (``_names``: only there may a module be imported, or a generic model's
parametrization created, to find it).
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any, TypeVar

from ..exceptions import (
    DeserializationError,
    FutureVersionError,
    MissingDeserializerError,
    RegistrationError,
    UnknownTypeError,
    UnportableTypeWarning,
    UnserializableTypeError,
)
from ._auto import auto_name, derive_codec
from ._builtins import BUILTIN_CODECS
from ._codec import (
    BatchPlan,
    DecodePlan,
    Decoder,
    EncodePlan,
    Encoder,
    caller_stacklevel,
)
from ._custom import custom_codec
from ._library_types import LIBRARY_CODECS, library_codec_for
from ._names import TRUSTED_MODULES_ENV, NameResolver, spells_types
from ._numpy import NUMPY_CODECS, numpy_codec_for
from ._pickling import own_pickling_hook
from ._plans import (
    batch_plan,
    fallback_plan,
    keeps_identity,
    migrating_plan,
    read_model_rows,
    read_models,
    tagging_plan,
    typed_plan,
)
from ._pydantic_types import PYDANTIC_CODECS
from ._rows import Shape
from ._stdlib import STDLIB_CODECS
from ._typed import typed_model
from ._types import STATEFUL_KINDS, JSONSchema, Migration, TypeCodec
from ._undecoded import UndecodedValue, written_back
from ._validation import check_schema

# A registered class, and what its serializer takes and its deserializer gives.
_Value = TypeVar("_Value")

_NATIVE = (str, int, float, bool, type(None), list, dict)
DEFAULT_MAX_DEPTH = 200
# Names a strict=False read found no class for, remembered per registry: at most this many.
MAX_UNKNOWN_NAMES = 4096


class TypeRegistry:
    """Codecs for the types a program stores, plus the built-in ones.

    ``validate``: check custom serializers' output against their declared schema on every
    encode (default; switch off per call with ``safe_serialize(..., validate=False)``).
    ``auto_resolve``: let tags name models/enums/dataclasses/NamedTuples that are defined in
    the process but not registered. ``max_depth``: deepest nesting accepted either way.
    ``typed_models``: write pydantic models whose values have exactly their declared types
    in the models' own JSON form, by pydantic-core (docs/format.md, "typed form"); reading
    that form is always supported. ``model_rows``: write a list of such models as rows
    (``rows@2``, or ``rows@3`` when a row holds a zoned datetime: each model an array of its
    field values); ``False`` writes ``models@1``, which flujo
    releases before 0.8 read too (for rolling upgrades). Both are always read.
    ``references``: write an object reached more than once in a value (shared, or in a
    cycle) once, with references to it elsewhere (docs/format.md, "Shared references and
    cycles"); ``False`` writes each occurrence in full and refuses cycles, as flujo before
    0.9 did and reads (for rolling upgrades). References are always read.
    ``trusted_modules``: module prefixes under which a stored name may import its module or
    have its generic parametrization created (docs/custom-types.md, "Reading in a fresh
    process"); None (default) reads them from ``$FLUJO_TRUSTED_MODULES`` and the
    ``[tool.flujo] trusted_modules`` list of ``./pyproject.toml`` when first needed.
    """

    def __init__(
        self, *, validate: bool = True, auto_resolve: bool = True,
        max_depth: int = DEFAULT_MAX_DEPTH, typed_models: bool = True, model_rows: bool = True,
        references: bool = True, trusted_modules: Iterable[str] | None = None,
    ) -> None:
        if trusted_modules is not None and not auto_resolve and tuple(trusted_modules):
            raise RegistrationError(
                "trusted_modules finds classes by name, which auto_resolve=False switches off")
        self.validate = validate
        self.auto_resolve = auto_resolve
        self.max_depth = max_depth
        self.typed_models = typed_models
        self.model_rows = model_rows
        self.references = references
        self._batch_plans: dict[type, BatchPlan] = {}
        self._lock = threading.RLock()
        self._by_type: dict[type, TypeCodec] = {}
        self._by_name: dict[str, TypeCodec] = {}
        self._derived: dict[type, TypeCodec] = {}
        self._pending_deserializers: dict[type, Callable[[Any], Any]] = {}
        self._names = NameResolver(trusted_modules)
        # Name -> len(sys.modules) when a strict=False read found no class of that name:
        # such a read keeps going, and would search the process again for each tag (100
        # to 250 µs). Forgotten on a registration, trust_modules, when a module has been
        # imported since, or when the process writes a class of that name.
        self._unknown_names: dict[str, int] = {}
        self._encode_plans: dict[type, EncodePlan] = {}
        self._decode_plans: dict[str, DecodePlan] = {}
        # Tag -> True for the planned tags whose tagged objects may carry a state (``s``):
        # models and dataclasses.
        self._stateful_tags: dict[str, bool] = {}
        # Tag -> the codec's from_text, for current-version tags of types stored as one
        # string: Decoder.decode_tagged reads those without going through the plan.
        self._text_readers: dict[str, Callable[[str], Any]] = {}
        # Tag -> its codec, for planned tags at their codec's current version: lists of
        # models are read through the codec's read_typed_list / read_typed_rows.
        self._current_codecs: dict[str, TypeCodec] = {}
        # Plans that containers may call without Encoder.encode: leaves (no recursion) and
        # custom serializers (which recurse through Encoder.encode and note their object).
        self._direct_plans: dict[type, EncodePlan] = {}
        self._identity: dict[type, bool] = {}  # keeps_identity, by type
        self._generation = 0  # bumped by every registration; a plan made before is not cached
        self._versions: tuple[int, Mapping[str, int]] | None = None  # current_versions()
        # The common calls share one encoder or decoder per setting and thread instead of
        # building one per call: a run's state lives on it (the objects seen, the anchors).
        self._threads = threading.local()
        for codec in (*BUILTIN_CODECS, *STDLIB_CODECS, *PYDANTIC_CODECS):
            if codec.py_type is not None:
                self._by_type[codec.py_type] = codec
            self._by_name[codec.name] = codec
        # Classes of other libraries: found when met (codec_for_type)
        for codec in (*(codec for _, codec in LIBRARY_CODECS), *NUMPY_CODECS):
            self._by_name[codec.name] = codec

    def shared_encoder(self, validate: bool, fragments: bool = False) -> Encoder:
        """The encoder for plain ``safe_serialize`` calls (no default, no manifest), or with
        ``fragments`` for ``serialize_to_bytes`` (see ``Encoder.fragments``)."""
        # Keyed by what the depth the codec stops at depends on (_codec.depth_limit): the
        # recursion limit, and the calling thread's stack, which is this thread's for good
        # (measured once per thread, and the encoders are the thread's own). Every call
        # passes here: one attribute and one lookup, the rest only for a new key.
        key = (validate, fragments, self.max_depth, sys.getrecursionlimit())
        try:
            encoder: Encoder = self._threads.encoders[key]
        except (AttributeError, KeyError):
            encoder = Encoder(self, validate=validate, default=None, max_depth=self.max_depth,
                              manifest=None, fragments=fragments)
            self._per_thread("encoders")[key] = encoder
        return encoder

    def shared_decoder(self, strict: bool) -> Decoder:
        key = (strict, self.max_depth, sys.getrecursionlimit())  # (see shared_encoder)
        try:
            decoder: Decoder = self._threads.decoders[key]
        except (AttributeError, KeyError):
            decoder = Decoder(self, strict=strict, max_depth=self.max_depth)
            self._per_thread("decoders")[key] = decoder
        return decoder

    def keeps_identity(self, cls: type) -> bool:
        """Whether an object of ``cls`` reached twice in a value is written once (lists,
        dicts and the types ``_plans.keeps_identity`` names)."""
        kept = self._identity.get(cls)
        if kept is None:
            codec = self.codec_for_type(cls)
            kept = codec is not None and keeps_identity(codec)
            self._cache_plan(self._identity, cls, kept, self._generation)
        return kept

    def _per_thread(self, name: str) -> dict[Any, Any]:
        """The calling thread's dict ``name`` (its encoders or decoders)."""
        cache: dict[Any, Any] | None = getattr(self._threads, name, None)
        if cache is None:
            cache = {}
            setattr(self._threads, name, cache)
        return cache

    def built_when_finished(self, cls: type) -> bool:
        """Whether a value of ``cls`` is made from its finished encoded value (a registered
        type's deserializer), so that it cannot be part of a cycle."""
        if cls is list or cls is dict:
            return False
        codec = self.codec_for_type(cls)
        return codec is not None and codec.kind == "custom"

    # -- registration ------------------------------------------------------------------
    def register_type(
        self,
        cls: type,
        *,
        serializer: Callable[[Any], Any] | None = None,
        deserializer: Callable[[Any], Any] | None = None,
        schema: JSONSchema | None = None,
        name: str | None = None,
        version: int = 1,
        migrations: Mapping[int, Migration] | None = None,
        aliases: Iterable[str] = (),
        validate: bool = True,
        description: str | None = None,
    ) -> TypeCodec:
        """Register how ``cls`` is stored; returns the codec now in force.

        Without ``serializer``, ``cls`` must be a pydantic model, dataclass, enum or NamedTuple
        and the codec is derived from it (use this to give it a stable ``name``, a
        ``version`` and ``migrations``). With ``serializer``, its output (encoded by flujo,
        so it may hold any supported value) is checked against ``schema`` when given.
        """
        if not isinstance(cls, type):
            raise RegistrationError(f"expected a class, got {cls!r}")
        if cls in _NATIVE:
            raise RegistrationError(
                f"{cls.__name__} is JSON-native and always stored as itself; it cannot be "
                "given a serializer"
            )
        type_name = auto_name(cls) if name is None else name
        _check_name(type_name)
        if type(version) is not int or version < 1:
            raise RegistrationError(
                f"version of {type_name!r} must be an int >= 1, got {version!r}")
        steps = dict(migrations or {})
        for start, step in steps.items():
            _check_step(type_name, version, start, step)
        alias_names = tuple(aliases)
        for alias in alias_names:
            _check_name(alias)
        codec: TypeCodec | None = None
        if serializer is None:
            if deserializer is not None or schema is not None:
                raise RegistrationError(
                    f"{type_name!r}: a deserializer or schema needs a serializer too"
                )
            codec = derive_codec(cls, type_name, version, steps)
            if codec is None:
                raise RegistrationError(
                    f"{cls.__qualname__} is not a pydantic model, dataclass, enum, NamedTuple "
                    "or subclass of str, int, float or bytes: pass serializer= (and "
                    "deserializer=) to register it"
                )
        else:
            if not callable(serializer) or (
                    deserializer is not None and not callable(deserializer)):
                raise RegistrationError(
                    f"{type_name!r}: serializer and deserializer must be callables")
            if schema is not None:
                check_schema(schema, owner=repr(type_name))
        # Locked from reading the pending deserializer to _install, so a concurrent
        # register_custom_deserializer lands either in pending (read here) or on the new codec.
        with self._lock:
            if serializer is not None:
                codec = custom_codec(
                    cls, serializer=serializer,
                    deserializer=deserializer or self._pending_deserializers.get(cls),
                    schema=schema, name=type_name, version=version, migrations=steps,
                    validate=validate, description=description,
                )
            assert codec is not None
            if description is not None:
                codec = replace(codec, description=description)
            codec = replace(codec, aliases=alias_names)
            self._install(cls, codec)
        return codec

    def register_custom_serializer(
        self, cls: type[_Value], serializer: Callable[[_Value], Any], *,
        deserializer: Callable[[Any], _Value] | None = None, schema: JSONSchema | None = None,
        name: str | None = None, version: int = 1,
        migrations: Mapping[int, Migration] | None = None,
    ) -> TypeCodec:
        return self.register_type(cls, serializer=serializer, deserializer=deserializer,
                                  schema=schema, name=name, version=version,
                                  migrations=migrations)

    def register_custom_deserializer(self, cls: type[_Value],
                                     deserializer: Callable[[Any], _Value]) -> None:
        """Attach a deserializer to ``cls``'s serializer (registered before or after this)."""
        if not callable(deserializer):
            raise RegistrationError(f"deserializer for {cls!r} must be callable")
        with self._lock:
            codec = self._by_type.get(cls)
            if codec is None or codec.kind != "custom":
                self._pending_deserializers[cls] = deserializer
                return
            assert codec.serializer is not None
            rebuilt = custom_codec(
                cls, serializer=codec.serializer, deserializer=deserializer,
                schema=codec.schema if codec.declared_schema else None, name=codec.name,
                version=codec.version, migrations=codec.migrations,
                validate=codec.validate or not codec.declared_schema,
                description=codec.description,
            )
            self._install(cls, replace(rebuilt, aliases=codec.aliases))

    def register_migration(self, type_or_name: type | str, from_version: int,
                           migration: Migration) -> None:
        """Register the step that upgrades the encoded form from ``from_version`` to the next."""
        with self._lock:
            codec = (self._by_name.get(type_or_name) if isinstance(type_or_name, str)
                     else self._by_type.get(type_or_name))
            if codec is None or codec.kind == "builtin":
                raise RegistrationError(
                    f"register {type_or_name!r} (with its current version) before its migrations"
                )
            _check_step(codec.name, codec.version, from_version, migration)
            updated = replace(codec, migrations={**codec.migrations, from_version: migration})
            self._install(codec.py_type, updated)  # type: ignore[arg-type]

    def trust_modules(self, *prefixes: str) -> None:
        """Trust these module prefixes too (see ``trusted_modules``)."""
        if not self.auto_resolve:
            raise RegistrationError(
                "trust_modules finds classes by name, which auto_resolve=False switches off")
        self._names.trust(prefixes)
        self._unknown_names.clear()

    @property
    def trusted_modules(self) -> tuple[str, ...]:
        """The module prefixes in force (read from the configuration on first use)."""
        return self._names.trusted() if self.auto_resolve else ()

    def _install(self, cls: type, codec: TypeCodec) -> None:
        names = (codec.name, *codec.aliases)
        for taken in names:
            holder = self._by_name.get(taken)
            if holder is not None and holder.py_type is not cls:
                raise RegistrationError(
                    f"the name {taken!r} is already used by {holder.py_type!r}"
                )
        previous = self._by_type.get(cls)
        if previous is not None and previous.kind != "builtin":
            for old in (previous.name, *previous.aliases):
                self._by_name.pop(old, None)
        self._by_type[cls] = codec
        for taken in names:
            self._by_name[taken] = codec
        self._pending_deserializers.pop(cls, None)
        self._generation += 1
        self._derived.clear()
        self._encode_plans.clear()
        self._direct_plans.clear()
        self._identity.clear()
        self._batch_plans.clear()
        self._decode_plans.clear()
        self._stateful_tags.clear()
        self._text_readers.clear()
        self._current_codecs.clear()
        self._unknown_names.clear()

    # -- lookup --------------------------------------------------------------------------
    def codec_for_type(self, cls: type) -> TypeCodec | None:
        """The codec that writes values of exactly ``cls`` (registered, inherited or derived)."""
        codec = self._by_type.get(cls)
        if codec is not None:
            return codec
        for base in cls.__mro__[1:-1]:
            inherited = self._by_type.get(base)
            if inherited is not None and inherited.kind == "custom":
                return inherited
        derived = self._derived.get(cls)
        if derived is None:
            derived = library_codec_for(cls) or numpy_codec_for(cls) or derive_codec(cls)
            if derived is None:
                return None
            self._derived[cls] = derived
        return derived

    def codec_named(self, name: str, remember_unknown: bool = False) -> TypeCodec | None:
        """The codec that reads tags named ``name``; None when nothing known has that name.

        ``remember_unknown`` (strict=False reads): a name no class had is not searched for
        again until something may have changed (see ``_unknown_names``).
        """
        codec = self._by_name.get(name)
        if codec is not None or not self.auto_resolve:
            return codec
        if remember_unknown and self._unknown_names.get(name) == len(sys.modules):
            return None
        cls = self._names.find(name)
        if cls is not None:
            return self.codec_for_type(cls)
        if remember_unknown:
            if len(self._unknown_names) >= MAX_UNKNOWN_NAMES:
                self._unknown_names.clear()  # bounded; the names still in use come back
            self._unknown_names[name] = len(sys.modules)
        return None

    def codecs(self) -> list[TypeCodec]:
        """Built-in and registered codecs (not the derived ones), sorted by name."""
        unique = {id(c): c for c in self._by_type.values()}
        unique.update({id(c): c for c in self._by_name.values()})
        return sorted(unique.values(), key=lambda c: c.name)

    def current_versions(self) -> Mapping[str, int]:
        """Each built-in and registered codec's version, by name (read on every load, so
        kept until the next registration)."""
        generation = self._generation
        cached = self._versions
        if cached is not None and cached[0] == generation:
            return cached[1]
        versions = MappingProxyType({codec.name: codec.version for codec in self.codecs()})
        self._versions = (generation, versions)
        return versions

    def oldest_written_versions(self) -> Mapping[str, int]:
        """Each codec's oldest version this code still writes, by name: its version, or an
        older one it writes where the value needs nothing newer (``rows@2`` beside
        ``rows@3``). A record holding that version needs no rewrite."""
        return MappingProxyType({codec.name: min((codec.version, *codec.also_writes))
                                 for codec in self.codecs()})

    def codec_for_factory(self, factory: object) -> TypeCodec | None:
        """The codec whose class is ``factory`` (read back by ``factory_named``): not one
        that writes several classes, or a class it finds only when met (numpy's, ...)."""
        if not isinstance(factory, type):
            return None
        codec = self.codec_for_type(factory)
        return codec if codec is not None and codec.py_type is factory else None

    def factory_named(self, name: str) -> Callable[[], Any]:
        codec = self.codec_named(name)
        if codec is None or not isinstance(codec.py_type, type):
            raise UnknownTypeError(f"defaultdict factory {name!r} is not a known type", tag=name)
        return codec.py_type

    # -- plans (called by the encoder/decoder on a cache miss) ------------------------------
    def _encode_plan_for(self, cls: type, default: Callable[[Any], Any] | None) -> EncodePlan:
        generation = self._generation
        if cls is UndecodedValue:  # kept by a strict=False read: written back as stored
            self._cache_plan(self._encode_plans, cls, _write_back_plan, generation)
            return _write_back_plan
        codec = self.codec_for_type(cls)
        if codec is None:
            if default is None:
                raise UnserializableTypeError(cls)
            return fallback_plan(default)
        if codec.kind in STATEFUL_KINDS:
            _refuse_own_pickling(cls)
        if codec.kind not in ("builtin", "custom") and codec.name == auto_name(cls):
            self._names.seen[codec.name] = cls
            self._unknown_names.pop(codec.name, None)
            if cls not in self._by_type and (_unportable(codec.name) or (
                    codec.name.endswith("]") and not spells_types(codec.name))):
                warnings.warn(_unportable_warning(cls), stacklevel=caller_stacklevel())
        plan = tagging_plan(codec)
        if codec.kind == "model" and self.typed_models:
            typed = typed_model(cls)
            if typed is not None:
                plan = typed_plan(codec, typed, rows=self.model_rows)
                self._cache_plan(self._batch_plans, cls,
                                 batch_plan(codec, typed, rows=self.model_rows), generation)
        self._cache_plan(self._encode_plans, cls, plan, generation)
        if codec.leaf is not None or codec.kind == "custom":
            self._cache_plan(self._direct_plans, cls, plan, generation)
        return plan

    def decode_model_batch(self, dec: Decoder, tag: Any, items: Any, depth: int) -> list[Any]:
        """Deprecated (removed in 1.0): ``models@1`` is read by ``_plans.read_models``."""
        warnings.warn("TypeRegistry.decode_model_batch is deprecated: lists of models are read"
                      " by the decoder's plans", DeprecationWarning, stacklevel=2)
        return read_models(dec, tag, items, depth)

    def decode_model_rows(self, dec: Decoder, tag: str, stored: Shape, rows: Any,
                          depth: int) -> list[Any]:
        """Deprecated (removed in 1.0): rows are read by ``_plans.read_model_rows``."""
        warnings.warn("TypeRegistry.decode_model_rows is deprecated: lists of models are read"
                      " by the decoder's plans", DeprecationWarning, stacklevel=2)
        return read_model_rows(dec, tag, stored, rows, depth)

    def current_codec(self, tag: str) -> TypeCodec | None:
        """The codec of ``tag``, planned already, when the tag is at its codec's current
        version; None for an older version (or a plan made before the last registration:
        a list is then read model by model, as an older version is)."""
        return self._current_codecs.get(tag)

    def _cache_plan(self, cache: dict[Any, Any], key: Any, plan: Any, generation: int) -> None:
        """Cache ``plan`` unless a registration happened since its codec was looked up.

        Without the check, a plan built from the old codec by one thread could be stored
        just after another thread's registration cleared the cache, and stay there.
        """
        with self._lock:
            if self._generation == generation:
                cache[key] = plan

    def _decode_plan_for(self, tag: str, remember_unknown: bool = False) -> DecodePlan:
        name, sep, version_text = tag.rpartition("@")
        if (not sep or not name or not version_text.isascii() or not version_text.isdecimal()
                or version_text.startswith("0")):  # isdecimal() alone: non-ASCII digits too
            raise DeserializationError(f"malformed type tag {tag!r}: expected 'name@version'")
        stored = int(version_text)
        generation = self._generation
        codec = self.codec_named(name, remember_unknown)
        if codec is None:
            raise UnknownTypeError(_unknown_name(tag, name, self), tag=tag)
        decode_value = codec.decode_value
        if decode_value is None:
            raise MissingDeserializerError(
                f"{name!r} has a serializer but no deserializer; add one with "
                f"register_custom_deserializer({_label(codec)}, from_json)", tag=tag,
            )
        if stored > codec.version:
            raise FutureVersionError(
                f"{tag!r} was written by a newer version of {name!r} (this code knows up to "
                f"v{codec.version}); upgrade the code before reading this data"
            )
        if stored == codec.version:
            plan: DecodePlan = decode_value
            self._cache_plan(self._current_codecs, tag, codec, generation)
            if codec.from_text is not None:
                self._cache_plan(self._text_readers, tag, codec.from_text, generation)
        else:
            plan = migrating_plan(codec, stored, decode_value)
        if codec.kind in STATEFUL_KINDS:
            self._cache_plan(self._stateful_tags, tag, True, generation)
        self._cache_plan(self._decode_plans, tag, plan, generation)
        return plan


def _write_back_plan(enc: Encoder, obj: Any, depth: int) -> Any:
    return written_back(obj, enc.manifest)


def _unportable_warning(cls: type) -> UnportableTypeWarning:
    """The warning for ``cls``, stored under a name other processes cannot find."""
    name = auto_name(cls)
    where = ("is defined in a function" if "<locals>" in name
             else "is defined in the script run as __main__")
    if "[" in name and not _unportable(name.partition("[")[0]):
        where = where.replace("is defined", "has a type argument defined")
    if not _unportable(name):
        where = "has type arguments that other processes cannot read back"
    return UnportableTypeWarning(
        f"{cls.__qualname__} {where}, so it is stored as {name!r}, a name other "
        "processes (flujo state show, another worker) cannot find; define it in an "
        f"importable module, or give it a stable name: register_type({cls.__name__}, "
        "name='myapp.Name') in code every reader runs", cls=cls)


def _refuse_own_pickling(cls: type) -> None:
    """Refuse a model or dataclass that chose what pickle stores of it, or runs on loading:
    flujo runs no code of the class when reading, so it cannot bring it back as pickle does."""
    found = own_pickling_hook(cls)
    if found is not None:
        owner, hook = found
        raise UnserializableTypeError(cls, hint=(
            f"{owner} defines its own {hook}, so pickle would store or rebuild it through that "
            "code, and flujo runs no code of a class when reading; register a serializer: "
            f"register_custom_serializer({cls.__qualname__}, to_json, deserializer=from_json, "
            "schema=...)"))


def _unportable(name: str) -> bool:
    """A derived name no other process resolves: a class of a script or of a function, or a
    parametrization with such a type argument."""
    return name.startswith("__main__:") or "__main__." in name or "<locals>" in name


def _unknown_name(tag: str, name: str, registry: TypeRegistry) -> str:
    module_name = name.partition(":")[0]
    if not registry.auto_resolve:
        hint = "register it (this registry has auto_resolve=False)"
    elif ":" in name and module_name not in sys.modules and module_name.isascii():
        hint = (f"import {module_name!r} before reading, or trust it: "
                f"TypeRegistry(trusted_modules=[...]), ${TRUSTED_MODULES_ENV} or "
                "[tool.flujo] trusted_modules in pyproject.toml")
    elif name.endswith("]") and not registry._names.is_trusted(module_name):
        hint = (f"trust {module_name!r} so that the parametrization can be rebuilt "
                "(TypeRegistry(trusted_modules=[...]), "
                f"${TRUSTED_MODULES_ENV} or [tool.flujo] trusted_modules), or create it before "
                "reading")
    else:
        hint = "import the module that defines it, or register it"
    return (f"unknown type tag {tag!r}: nothing named {name!r} is registered or defined in "
            f"this process; {hint} (a custom type: flujo.utils.register_custom_serializer("
            f"cls, to_json, deserializer=from_json, name={name!r}))")


def _label(codec: TypeCodec) -> str:
    return codec.py_type.__qualname__ if codec.py_type is not None else codec.name


def _check_name(name: object) -> None:
    if (not isinstance(name, str) or not name or "@" in name or name.startswith("$")
            or any(ch.isspace() for ch in name)):
        raise RegistrationError(
            f"type name {name!r} must be a non-empty string without '@', whitespace or a "
            "leading '$'"
        )


def _check_step(name: str, version: int, start: object, step: object) -> None:
    if type(start) is not int or not 1 <= start < version:
        raise RegistrationError(
            f"migration of {name!r} from version {start!r}: the start must be an int in "
            f"[1, {version - 1}] (the type's current version is {version})"
        )
    if not callable(step):
        raise RegistrationError(f"migration of {name!r} from v{start} is not callable")
