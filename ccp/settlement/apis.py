from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ccp.clock import utcnow
from ccp.contracts.models import Currency
from ccp.errors import ApplicationError, NotFound
from ccp.query import PAGE_PARAMS, query_check
from ccp.serializers import CLIENT_ID_HELP, CLIENT_ID_PATTERN, MoneyField, PatternField, TextField
from ccp.settlement.chain.connect import operator_account, web3_for
from ccp.settlement.faucet import faucet_send
from ccp.settlement.models import Withdrawal
from ccp.settlement.selectors import chain_info, fund_lock_deployed
from ccp.settlement.services import WithdrawalAsk, withdrawal_request
from ccp.throttling import WithdrawalThrottle, client_ip, throttle


class WithdrawalSerializer(serializers.ModelSerializer):
    currency = serializers.CharField(source="currency.symbol")
    amount = MoneyField(read_only=True)

    class Meta:
        model = Withdrawal
        fields = ["id", "client_withdrawal_id", "currency", "amount", "state", "created_at", "released_at"]


class WithdrawalsApi(generics.ListAPIView):
    """Your withdrawals (GET) and a new one (POST): up to your available collateral. Once `released`,
    call `withdraw(token, amount)` on the FundLock contract from your wallet."""

    serializer_class = WithdrawalSerializer

    throttle_classes = [WithdrawalThrottle]

    class WithdrawalRequestSerializer(serializers.Serializer):
        client_withdrawal_id = PatternField(CLIENT_ID_PATTERN, max_length=64, help_text=CLIENT_ID_HELP)
        currency = TextField(max_length=12)
        amount = MoneyField()

    def get_queryset(self):
        query_check(self.request, *PAGE_PARAMS)
        return Withdrawal.objects.filter(client=self.request.user).select_related("currency")

    @extend_schema(request=WithdrawalRequestSerializer, responses={
        201: WithdrawalSerializer,
        200: OpenApiResponse(WithdrawalSerializer, description="the same withdrawal sent again"),
        409: OpenApiResponse(description="insufficient_collateral, or client_withdrawal_id_reused: the id was used "
                                         "for a different withdrawal")})
    def post(self, request):
        data = self.WithdrawalRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        currency = Currency.objects.filter(symbol=fields.pop("currency")).first()
        if currency is None:
            raise ApplicationError("No such currency.", code="unknown_currency")
        withdrawal, created = withdrawal_request(client=request.user, ask=WithdrawalAsk(currency=currency, **fields),
                                                 now=utcnow())
        return Response(WithdrawalSerializer(withdrawal).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ChainTokenSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    name = serializers.CharField()
    address = serializers.CharField(help_text="ERC-20 contract address, EIP-55 checksummed")
    decimals = serializers.IntegerField(help_text="amounts on chain are in units of 10^-decimals")


class ChainSerializer(serializers.Serializer):
    configured = serializers.BooleanField(
        help_text="false: the backend watches no chain (no CCP_CHAIN_URL or no FundLock deployed); "
                  "addresses are null and no token is listed")
    chain_id = serializers.IntegerField(allow_null=True)
    fund_lock_address = serializers.CharField(allow_null=True, help_text="EIP-55 checksummed")
    deployed_block = serializers.IntegerField(allow_null=True, help_text="the block FundLock was deployed in")
    confirmations = serializers.IntegerField(help_text="blocks a deposit waits before it is credited")
    tokens = ChainTokenSerializer(many=True, help_text="accepted collateral tokens")
    fund_lock_abi = serializers.ListField(child=serializers.DictField(), help_text="deposit(token, amount), "
                                          "withdraw(token, amount), balances(token, client), ...")
    token_abi = serializers.ListField(child=serializers.DictField(), help_text="ERC-20 (approve, balanceOf, ...)")


class ChainApi(APIView):
    """What a wallet needs to deposit: chain id, FundLock address and ABI, accepted tokens with their
    addresses and decimals, and how many confirmations a deposit waits. Public."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses=ChainSerializer)
    def get(self, request):
        query_check(request)
        return Response(ChainSerializer(chain_info()).data)


class FaucetMintSerializer(serializers.Serializer):
    currency = serializers.CharField()
    amount = MoneyField(read_only=True)
    tx_hash = serializers.CharField()


class FaucetSerializer(serializers.Serializer):
    address = serializers.CharField(help_text="the wallet, EIP-55 checksummed")
    gas_wei = serializers.CharField(help_text="the wallet's ether balance now, in wei (a decimal string)")
    mints = FaucetMintSerializer(many=True, help_text="one mint per accepted token")


class FaucetApi(APIView):
    """Demo only (`CCP_DEMO_FAUCET=1`, set by bin/run; 404 otherwise): demo tokens (10,000 of each
    accepted token) and gas (topped up to 1 ETH) for a wallet on the development chain. Public,
    throttled per IP address and per wallet address (`CCP_THROTTLE_FAUCET`)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    class FaucetRequestSerializer(serializers.Serializer):
        address = PatternField(r"^0x[0-9a-fA-F]{40}$", max_length=42, help_text="0x and 40 hex digits")

    @extend_schema(request=FaucetRequestSerializer, responses={
        200: FaucetSerializer,
        404: OpenApiResponse(description="not_found: the faucet is off (not a demo)"),
        409: OpenApiResponse(description="chain_not_configured: no chain, FundLock or operator key"),
        429: OpenApiResponse(description="throttled"),
        503: OpenApiResponse(description="chain_unavailable: the chain node does not answer")})
    def post(self, request):
        query_check(request)
        if not settings.CCP_DEMO_FAUCET:
            raise NotFound("Not found.")
        throttle("faucet-ip", "CCP_THROTTLE_FAUCET", client_ip(request))
        data = self.FaucetRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        address = data.validated_data["address"]
        throttle("faucet-address", "CCP_THROTTLE_FAUCET", address.lower())
        if fund_lock_deployed() is None or not settings.CCP_CHAIN_OPERATOR_KEY:
            raise ApplicationError("The demo chain is not configured.", code="chain_not_configured",
                                   http_status=status.HTTP_409_CONFLICT)
        try:
            gift = faucet_send(address=address, w3=web3_for(settings.CCP_CHAIN_URL),
                               operator=operator_account(settings.CCP_CHAIN_OPERATOR_KEY))
        except OSError as exc:  # the node refused, dropped or timed out a call (requests' errors are OSErrors)
            raise ApplicationError("The chain node does not answer; retry shortly.", code="chain_unavailable",
                                   http_status=status.HTTP_503_SERVICE_UNAVAILABLE) from exc
        return Response(FaucetSerializer({**gift.__dict__, "gas_wei": str(gift.gas_wei)}).data)
