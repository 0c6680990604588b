from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.accounts.models import FundLock
from ccp.accounts.selectors import statement_lines, statement_totals
from ccp.accounts.serializers import BalanceSerializer, StatementLineSerializer, StatementTotalsSerializer
from ccp.accounts.services import api_token_revoke, signin_challenge_create, signin_token_issue
from ccp.clock import utcnow
from ccp.query import query_check, query_filters
from ccp.serializers import PatternField, TextField
from ccp.throttling import SignInThrottle, throttle

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"


class NonceApi(APIView):
    """Step 1 of wallet sign-in: get a nonce and the EIP-4361 message to sign with your key."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [SignInThrottle]

    class NonceRequestSerializer(serializers.Serializer):
        address = PatternField(ADDRESS_PATTERN, help_text="your wallet's address, 0x and 40 hex digits")

    class NonceResponseSerializer(serializers.Serializer):
        nonce = serializers.CharField()
        message = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(request=NonceRequestSerializer, responses={
        201: NonceResponseSerializer,
        403: OpenApiResponse(description="signin_address_not_registered: no deposit from this address yet")})
    def post(self, request):
        data = self.NonceRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        address = data.validated_data["address"]
        throttle("signin-address", "CCP_THROTTLE_SIGNIN_ADDRESS", address.lower())
        challenge = signin_challenge_create(address=address, now=utcnow())
        return Response(self.NonceResponseSerializer(challenge).data, status=status.HTTP_201_CREATED)


class TokenApi(APIView):
    """Step 2 of wallet sign-in: exchange the signed message for an API token (Bearer)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [SignInThrottle]

    class TokenRequestSerializer(serializers.Serializer):
        message = TextField(max_length=2000, trim_whitespace=False, help_text="the message from /auth/nonce, exactly")
        signature = TextField(max_length=200, help_text="EIP-191 signature: 0x and 130 hex digits")

    class TokenResponseSerializer(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField()
        address = serializers.CharField()

    @extend_schema(request=TokenRequestSerializer, responses={
        201: TokenResponseSerializer,
        401: OpenApiResponse(description="signin_nonce_unknown, signin_nonce_used, signin_nonce_expired, "
                                         "signin_wrong_domain, signin_message_altered, signin_wrong_signer"),
        403: OpenApiResponse(description="signin_address_not_registered: no deposit from this address yet")})
    def post(self, request):
        data = self.TokenRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = signin_token_issue(**data.validated_data, now=utcnow())
        body = {"token": issued.token, "expires_at": issued.api_token.expires_at,
                "address": issued.api_token.client.checksum_address}
        return Response(self.TokenResponseSerializer(body).data, status=status.HTTP_201_CREATED)


class MeApi(APIView):
    """Who the token belongs to."""

    @extend_schema(responses=inline_serializer("Me", {"address": serializers.CharField(),
                                                      "registered_at": serializers.DateTimeField()}))
    def get(self, request):
        query_check(request)
        return Response({"address": request.user.checksum_address, "registered_at": request.user.registered_at})


class BalancesApi(generics.ListAPIView):
    """Your collateral per currency: fundlock, settle value, order value, lockups and available."""

    serializer_class = BalanceSerializer
    pagination_class = None

    def get_queryset(self):
        query_check(self.request)
        return FundLock.objects.filter(client=self.request.user).select_related("currency").order_by("currency__symbol")


class StatementApi(APIView):
    """Your statement per currency: deposits and cash movements by kind, their sum, and the balance
    they add up to (fundlock + settle value)."""

    @extend_schema(responses=StatementTotalsSerializer(many=True))
    def get(self, request):
        query_check(request)
        return Response(StatementTotalsSerializer(statement_totals(client=request.user), many=True).data)


class StatementLinesApi(generics.ListAPIView):
    """Your statement's lines in one currency, newest first: every deposit and cash movement."""

    serializer_class = StatementLineSerializer

    class StatementFilterSerializer(serializers.Serializer):
        currency = PatternField(r"^[A-Z0-9]{2,12}$", help_text="a currency symbol, e.g. USDC")

    @extend_schema(parameters=[StatementFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = query_filters(self.request, self.StatementFilterSerializer)
        return statement_lines(client=self.request.user, currency_symbol=filters["currency"])


class SignOutApi(APIView):
    """Revoke the token used for this request."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        api_token_revoke(api_token=request.auth, now=utcnow())
        return Response(status=status.HTTP_204_NO_CONTENT)
